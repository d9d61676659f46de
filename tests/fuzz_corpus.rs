//! The fuzz targets' seed corpora, run as ordinary tests.
//!
//! Each target's body lives once, in `fuzz/src/lib.rs`; this file includes it and runs every
//! file of `fuzz/corpus/<target>/` through it. A panic fails the test; files named `valid-*`
//! must also decode (or, for `open_dir`, open cleanly in both recovery modes).
//!
//! The seeds are made by `regenerate_seed_corpora` (ignored; run it with
//! `cargo test --test fuzz_corpus -- --ignored regenerate_seed_corpora` after a format change).

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::{FIX_CRCS, Image, PAD_SEGMENTS, PUT_ONE, REAL_FS, SECOND_DIR};
use tidegate::agent::wire;
use tidegate::format::checkpoint::{Checkpoint, DirCheckpoint};
use tidegate::format::record::{self, Kind};
use tidegate::format::{Writer, checkpoint, crc32, file_name, segment_header};
use tidegate::ids::{RecordPtr, SegmentId};
use tidegate::{Event, FileChannel, FileChannelConfig};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Every seed of `target`, by name (hidden files, such as libFuzzer's lock files, skipped).
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let entry = entry.expect("corpus entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(entry.path()).expect("reading a corpus file");
            (name, bytes)
        })
        .filter(|(name, _)| !name.starts_with('.'))
        .collect();
    files.sort();
    assert!(
        files.iter().any(|(n, _)| n.starts_with("valid-")),
        "{} has no valid-* seed",
        dir.display()
    );
    files
}

/// Runs `body` on every seed of `target`; a `valid-*` seed must make it return true.
fn run_decoder_corpus(target: &str, body: fn(&[u8]) -> bool) {
    for (name, bytes) in corpus(target) {
        let decoded = body(&bytes);
        if name.starts_with("valid-") {
            assert!(decoded, "{target}/{name} should decode");
        }
    }
}

#[test]
fn decode_record_corpus() {
    run_decoder_corpus("decode_record", harness::decode_record);
}

#[test]
fn decode_segment_header_corpus() {
    run_decoder_corpus("decode_segment_header", harness::decode_segment_header);
}

#[test]
fn decode_checkpoint_corpus() {
    run_decoder_corpus("decode_checkpoint", harness::decode_checkpoint);
}

#[test]
fn decode_batch_corpus() {
    run_decoder_corpus("decode_batch", harness::decode_batch);
}

#[test]
fn open_dir_corpus() {
    for (name, bytes) in corpus("open_dir") {
        let outcome = harness::open_dir(&bytes);
        eprintln!("open_dir/{name}: {outcome:?}");
        if name.starts_with("valid-") {
            for (mode, opened) in [("strict", outcome.strict), ("skip", outcome.skip)] {
                let opened =
                    opened.unwrap_or_else(|| panic!("open_dir/{name} should open ({mode})"));
                assert!(
                    opened.clean,
                    "open_dir/{name} should drain and close ({mode})"
                );
            }
        }
    }
}

#[test]
fn image_round_trips() {
    let image = Image {
        flags: FIX_CRCS | SECOND_DIR,
        checkpoint: vec![1, 2, 3],
        segments: vec![(4, vec![5; 70]), (9, vec![6; 3])],
    };
    assert_eq!(Image::parse(&image.to_bytes()), image);
    assert_eq!(
        Image::parse(&[]),
        Image {
            flags: 0,
            checkpoint: Vec::new(),
            segments: Vec::new()
        }
    );
}

// ---- Seed generation ----

fn write_seeds(target: &str, seeds: &[(&str, Vec<u8>)]) {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).expect("writing a seed");
    }
}

fn sealed(encode: impl FnOnce(&mut Vec<u8>) -> record::Unsealed, seq: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    let u = encode(&mut buf);
    record::seal(&mut buf, &u, seq);
    buf
}

/// Recomputes the CRC in the last four bytes (checkpoints) or at 60..64 (segment headers).
fn fix_trailing_crc(mut bytes: Vec<u8>) -> Vec<u8> {
    let body = bytes.len() - 4;
    let crc = crc32(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn record_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let event = Event::new(b"hello".to_vec())
        .with_header("host", "a")
        .with_header("k", "");
    let put = sealed(|b| record::encode_put(b, 7, &event), 42);
    let mut truncated = put.clone();
    truncated.pop();
    let mut lying = Vec::new();
    let mut w = Writer::new(&mut lying);
    w.u32(0); // hcrc, set below
    w.u32(0); // pcrc, set below
    w.u32(8); // len
    w.u8(Kind::Put as u8);
    w.bytes(&[0; 3]); // flags, key id
    w.u64(1); // seq
    w.u64(1); // txn
    w.u32(0); // body_len
    w.u32(u32::MAX); // header count
    record::reseal(&mut lying);
    let mut flagged = sealed(|b| record::encode_marker(b, Kind::Commit, 1, 0), 1);
    flagged[13] = 2;
    record::reseal(&mut flagged);
    let mut huge = put.clone();
    huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    let hcrc = crc32(&huge[4..record::HEADER_LEN]);
    huge[..4].copy_from_slice(&hcrc.to_le_bytes());
    let lz4 = tidegate::at_rest::PayloadCodec::new(tidegate::at_rest::Compression::Lz4, 0, None)
        .expect("codec");
    let compressible =
        Event::new(b"GET /index.html HTTP/1.1 200 ".repeat(20)).with_header("h", "v");
    let put_lz4 = {
        let mut b = Vec::new();
        let u = record::encode_put_with(&mut b, 7, &compressible, &lz4, &mut Vec::new());
        record::seal_with(&mut b, &u, 43, &lz4).expect("seal");
        b
    };
    let mut lying_lz4 = put_lz4.clone();
    lying_lz4[record::HEADER_LEN + 1..record::HEADER_LEN + 5]
        .copy_from_slice(&u32::MAX.to_le_bytes()); // raw_len
    record::reseal(&mut lying_lz4);
    let batching =
        tidegate::at_rest::PayloadCodec::new(tidegate::at_rest::Compression::Lz4, 0, None)
            .expect("codec")
            .with_batching(true);
    let put_batch = {
        let mut raw = Vec::new();
        for i in 0..5 {
            record::write_batch_entry(
                &mut raw,
                &Event::new(
                    format!("GET /index.html HTTP/1.1 200 {i}")
                        .repeat(3)
                        .into_bytes(),
                )
                .with_header("i", i.to_string()),
            );
        }
        let mut b = Vec::new();
        let u = record::encode_put_batch(&mut b, 8, 5, &raw, &batching).expect("compresses");
        record::seal_with(&mut b, &u, 44, &batching).expect("seal");
        b
    };
    // The count says 6 (one more event than the block holds), CRCs recomputed.
    let mut lying_count = put_batch.clone();
    lying_count[record::HEADER_LEN] = 6;
    record::reseal(&mut lying_count);
    vec![
        ("valid-put-batch", put_batch),
        ("put-batch-lying-count", lying_count),
        ("valid-put", put),
        ("valid-put-lz4", put_lz4),
        ("lz4-lying-raw-len", lying_lz4),
        (
            "valid-put-empty",
            sealed(|b| record::encode_put(b, 1, &Event::new(Vec::new())), 1),
        ),
        (
            "valid-take",
            sealed(|b| record::encode_take(b, 3, RecordPtr::new(9, 1 << 40)), 5),
        ),
        (
            "valid-commit",
            sealed(|b| record::encode_marker(b, Kind::Commit, 3, 2), 6),
        ),
        (
            "valid-rollback",
            sealed(|b| record::encode_marker(b, Kind::Rollback, 4, 1), 7),
        ),
        ("empty", Vec::new()),
        ("end-marker", vec![0; record::HEADER_LEN]),
        ("truncated-put", truncated),
        ("lying-header-count", lying),
        ("unknown-flag", flagged),
        ("huge-length", huge),
    ]
}

fn segment_header_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let header = |segment_id, created_ms| {
        segment_header::encode(&segment_header::SegmentHeader::new(
            segment_id, created_ms, 1,
        ))
    };
    let recycled = segment_header::encode(&segment_header::SegmentHeader::recycled(4, 9, 1 << 33));
    let mut version2 = header(1, 0);
    version2[8..10].copy_from_slice(&2u16.to_le_bytes());
    let mut wide_id = header(1, 0);
    wide_id[16..24].copy_from_slice(&(1u64 << 32).to_le_bytes());
    let mut bad_magic = header(1, 0);
    bad_magic[0] = b'X';
    let mut followed = header(3, 5);
    followed.extend(sealed(|b| record::encode_marker(b, Kind::Commit, 1, 0), 1));
    vec![
        ("valid-1", header(1, 1_700_000_000_000)),
        ("valid-max", header(u32::MAX, u64::MAX)),
        ("valid-followed-by-record", followed),
        ("version-2", fix_trailing_crc(version2)),
        ("version-3-recycled", recycled),
        ("id-over-32-bits", fix_trailing_crc(wide_id)),
        ("bad-magic", bad_magic),
        ("truncated", header(1, 0)[..40].to_vec()),
        ("empty", Vec::new()),
    ]
}

fn checkpoint_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let empty = Checkpoint {
        generation: 1,
        created_ms: 0,
        last_seq: 0,
        next_txn: 1,
        queued_bytes: 0,
        inflight: 0,
        dirs: Vec::new(),
        committing: Vec::new(),
        commit_pins: Vec::new(),
        queue: Vec::new(),
    };
    let sample = Checkpoint {
        generation: 3,
        created_ms: 99,
        last_seq: 1000,
        next_txn: 55,
        queued_bytes: 4096,
        inflight: 1,
        dirs: vec![
            DirCheckpoint {
                tail: RecordPtr::new(4, 9000),
                scan_start: RecordPtr::new(3, 64),
            },
            DirCheckpoint {
                tail: RecordPtr::new(5, 64),
                scan_start: RecordPtr::new(5, 64),
            },
        ],
        committing: vec![53],
        commit_pins: vec![(SegmentId(3), SegmentId(4))],
        queue: vec![RecordPtr::new(3, 64), RecordPtr::new(4, 128)],
    };
    let bytes = checkpoint::encode(&sample);
    // Field offsets: dir_count at 64; then the dirs, the committing list, the commit pins,
    // queue_len (u64) and run_count (u32).
    let queue_len_at = 64 + 4 + 2 * 24 + 4 + 8 + 4 + 8;
    let mut lying_queue = bytes.clone();
    lying_queue[queue_len_at..queue_len_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let mut lying_runs = bytes.clone();
    lying_runs[queue_len_at + 8..queue_len_at + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    // The sample's two events are in different segments: two runs of one event. Claim two
    // events for the first run.
    let mut long_run = bytes.clone();
    long_run[queue_len_at + 16..queue_len_at + 20].copy_from_slice(&2u32.to_le_bytes());
    let mut lying_dirs = bytes.clone();
    lying_dirs[64..68].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut too_many_inflight = bytes.clone();
    too_many_inflight[56..64].copy_from_slice(&3u64.to_le_bytes());
    let mut scan_after_tail = bytes.clone();
    scan_after_tail[80..88].copy_from_slice(&9001u64.to_le_bytes());
    let mut bad_crc = bytes.clone();
    bad_crc[20] ^= 1;
    vec![
        ("valid-empty", checkpoint::encode(&empty)),
        ("valid-sample", bytes.clone()),
        ("lying-queue-length", fix_trailing_crc(lying_queue)),
        ("lying-dir-count", fix_trailing_crc(lying_dirs)),
        ("lying-run-count", fix_trailing_crc(lying_runs)),
        ("run-longer-than-queue", fix_trailing_crc(long_run)),
        ("inflight-over-queue", fix_trailing_crc(too_many_inflight)),
        ("scan-start-after-tail", fix_trailing_crc(scan_after_tail)),
        ("bad-crc", bad_crc),
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("empty", Vec::new()),
    ]
}

/// Recomputes the CRC in the last four bytes of a binary batch after its content changed.
fn fix_batch_crc(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(bytes.len() - wire::CRC_LEN);
    let crc = crc32(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

fn batch_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let sample = vec![
        Event::new(b"hello".to_vec()).with_header("host", "a"),
        Event::new(vec![0xff, 0x00, b'\n']),
        Event::new(Vec::new())
            .with_header("k", "")
            .with_header("z", "last"),
    ];
    let encode = |events: &[Event]| wire::encode_binary(events).expect("encode");
    let bytes = encode(&sample);
    // Offsets in `bytes`: count at 8; the first event at 12 (header_count, body_len, then its
    // one header: key_len at 20, key "host" at 24..28, value_len at 28, value "a" at 32).
    let with = |at: usize, v: &[u8]| {
        let mut b = bytes.clone();
        b[at..at + v.len()].copy_from_slice(v);
        fix_batch_crc(b)
    };
    let mut trailing = bytes.clone();
    trailing.insert(bytes.len() - wire::CRC_LEN, 0);
    let mut bad_crc = bytes.clone();
    bad_crc[14] ^= 1;
    let mut repeated_key = Vec::new();
    let mut w = Writer::new(&mut repeated_key);
    w.bytes(&wire::MAGIC);
    w.u16(wire::VERSION);
    w.u16(0); // flags
    w.u32(1); // events
    w.u32(2); // headers
    w.u32(0); // body_len
    for value in [b"x", b"y"] {
        w.u32(1);
        w.bytes(b"a");
        w.u32(1);
        w.bytes(value);
    }
    w.u32(0); // crc, set below
    let repeated_key = fix_batch_crc(repeated_key);
    let many: Vec<Event> = (0..40)
        .map(|i| Event::new(vec![b'a'; i]).with_header("i", i.to_string()))
        .collect();
    vec![
        ("valid-empty-batch", encode(&[])),
        ("valid-sample", bytes.clone()),
        ("valid-many", encode(&many)),
        ("json-batch", wire::encode_json(&sample)),
        (
            "json-malformed",
            br#"[{"headers":{"a":"b"},"body":"x","body_base64":"eA=="}"#.to_vec(),
        ),
        ("bad-magic", with(0, b"XGWB")),
        ("version-2", with(4, &2u16.to_le_bytes())),
        ("flags-set", with(6, &1u16.to_le_bytes())),
        ("lying-event-count", with(8, &u32::MAX.to_le_bytes())),
        ("lying-header-count", with(12, &u32::MAX.to_le_bytes())),
        ("lying-body-length", with(16, &u32::MAX.to_le_bytes())),
        ("lying-key-length", with(20, &u32::MAX.to_le_bytes())),
        ("key-not-utf8", with(24, &[0xff])),
        ("repeated-key", repeated_key),
        ("trailing-byte", fix_batch_crc(trailing)),
        ("bad-crc", bad_crc),
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("empty", Vec::new()),
    ]
}

fn channel_cfg(root: &Path, dirs: usize) -> FileChannelConfig {
    let data: Vec<PathBuf> = (0..dirs)
        .map(|i| root.join(if i == 0 { "data" } else { "data2" }))
        .collect();
    FileChannelConfig::new(root.join("checkpoint"), data)
        .max_segment_size(harness::SEGMENT_SIZE)
        .max_event_size(harness::MAX_EVENT_SIZE)
        .minimum_required_space(1 << 20)
}

fn event(i: usize, body_len: usize) -> Event {
    Event::new(vec![b'a' + (i % 26) as u8; body_len]).with_header("i", i.to_string())
}

fn put(ch: &FileChannel, range: std::ops::Range<usize>, body_len: usize) {
    let mut tx = ch.transaction();
    for i in range {
        tx.put(event(i, body_len)).expect("put");
    }
    tx.commit().expect("commit");
}

/// The directory a channel left, as an image: the newest checkpoint, and the segments with
/// their trailing zeros cut (`PAD_SEGMENTS` puts them back).
fn capture(root: &Path, flags: u8) -> Vec<u8> {
    let newest_checkpoint = std::fs::read_dir(root.join("checkpoint"))
        .expect("checkpoint dir")
        .filter_map(|e| {
            let name = e.expect("entry").file_name().to_string_lossy().into_owned();
            file_name::parse_checkpoint(&name)
        })
        .max();
    let checkpoint = newest_checkpoint.map_or_else(Vec::new, |g| {
        std::fs::read(root.join("checkpoint").join(file_name::checkpoint(g))).expect("checkpoint")
    });
    let mut segments = Vec::new();
    for dir in ["data", "data2"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut ids: Vec<u32> = entries
            .filter_map(|e| {
                let name = e.expect("entry").file_name().to_string_lossy().into_owned();
                file_name::parse_segment(&name)
            })
            .collect();
        ids.sort_unstable();
        for id in ids {
            let mut bytes =
                std::fs::read(root.join(dir).join(file_name::segment(id))).expect("segment");
            while bytes.last() == Some(&0) {
                bytes.pop();
            }
            segments.push((id, bytes));
        }
    }
    assert!(segments.len() <= 2, "an image holds two segments at most");
    if flags & SECOND_DIR != 0 {
        assert_eq!(segments.len(), 2, "one segment per directory");
    }
    Image {
        flags: flags | PAD_SEGMENTS,
        checkpoint,
        segments,
    }
    .to_bytes()
}

fn open_dir_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut seeds = Vec::new();

    // The log alone: no checkpoint was ever written, so replay reads every record.
    let dir = tempfile::tempdir().expect("tempdir");
    let ch =
        FileChannel::open(channel_cfg(dir.path(), 1).checkpoint_on_close(false)).expect("open");
    put(&ch, 0..2, 10);
    put(&ch, 2..3, 0);
    let mut tx = ch.transaction();
    assert_eq!(tx.take_batch(1, Duration::ZERO).expect("take").len(), 1);
    tx.commit().expect("commit");
    let mut tx = ch.transaction();
    tx.put(event(9, 3)).expect("put");
    tx.rollback().expect("rollback");
    ch.close().expect("close");
    let log_only = capture(dir.path(), 0);
    seeds.push(("valid-log-only", log_only.clone()));

    // A checkpoint, and records after it.
    let dir = tempfile::tempdir().expect("tempdir");
    let ch =
        FileChannel::open(channel_cfg(dir.path(), 1).checkpoint_on_close(false)).expect("open");
    put(&ch, 0..3, 20);
    ch.checkpoint().expect("checkpoint");
    put(&ch, 3..4, 20);
    let mut tx = ch.transaction();
    assert_eq!(tx.take_batch(2, Duration::ZERO).expect("take").len(), 2);
    tx.commit().expect("commit");
    ch.close().expect("close");
    let with_checkpoint = capture(dir.path(), 0);
    seeds.push(("valid-checkpoint", with_checkpoint.clone()));
    let mut put_one = with_checkpoint.clone();
    put_one[0] |= PUT_ONE;
    seeds.push(("valid-checkpoint-then-put", put_one));
    let mut real_fs = with_checkpoint;
    real_fs[0] |= REAL_FS | PUT_ONE;
    seeds.push(("valid-checkpoint-then-put-real-fs", real_fs));

    // A take in flight at the checkpoint and at the "crash".
    let dir = tempfile::tempdir().expect("tempdir");
    let ch =
        FileChannel::open(channel_cfg(dir.path(), 1).checkpoint_on_close(false)).expect("open");
    put(&ch, 0..3, 5);
    let mut tx = ch.transaction();
    assert_eq!(tx.take_batch(2, Duration::ZERO).expect("take").len(), 2);
    ch.checkpoint().expect("checkpoint");
    ch.close().expect("close");
    seeds.push(("valid-inflight-take", capture(dir.path(), 0)));
    drop(tx);

    // Two segments: the log rolled.
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(channel_cfg(dir.path(), 1)).expect("open");
    for i in 0..5 {
        put(&ch, i..i + 1, 900);
    }
    ch.close().expect("close");
    let two_segments = capture(dir.path(), 0);
    seeds.push(("valid-two-segments", two_segments.clone()));
    let mut real_fs = two_segments;
    real_fs[0] |= REAL_FS;
    seeds.push(("valid-two-segments-real-fs", real_fs));

    // Two data directories, one segment each.
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(channel_cfg(dir.path(), 2)).expect("open");
    for i in 0..4 {
        put(&ch, i..i + 1, 30);
    }
    ch.close().expect("close");
    seeds.push(("valid-two-dirs", capture(dir.path(), SECOND_DIR)));

    // PutBatch records (batch compression), one event of a batch taken, then a checkpoint: its
    // queue points into the batch (index bits set).
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(
        channel_cfg(dir.path(), 1)
            .checkpoint_on_close(false)
            .compression(tidegate::at_rest::Compression::Lz4)
            .batch_compression(true),
    )
    .expect("open");
    put(&ch, 0..6, 60);
    put(&ch, 6..10, 60);
    let mut tx = ch.transaction();
    assert_eq!(tx.take_batch(1, Duration::ZERO).expect("take").len(), 1);
    tx.commit().expect("commit");
    ch.checkpoint().expect("checkpoint");
    let mut tx = ch.transaction();
    assert_eq!(tx.take_batch(2, Duration::ZERO).expect("take").len(), 2);
    tx.commit().expect("commit");
    ch.close().expect("close");
    assert!(ch.stats().batches_compressed >= 2);
    seeds.push(("valid-put-batch", capture(dir.path(), 0)));

    // Nothing at all: a new channel.
    seeds.push(("valid-empty", Vec::new()));

    // Damage with the CRCs fixed up: an unknown flag on the first record (strict refuses, skip
    // skips it), and a segment id that differs from the file name.
    let mut flagged = log_only.clone();
    flagged[0] |= FIX_CRCS;
    let first_record = harness::IMAGE_HEADER_LEN + segment_header::LEN;
    flagged[first_record + 13] = 1;
    seeds.push(("damaged-record-crc-fixed", flagged));
    let mut renamed = log_only.clone();
    renamed[1] = 7;
    seeds.push(("segment-id-differs", renamed));

    // A segment too short for a header and one record header.
    let mut short = Image::parse(&log_only);
    short.flags &= !PAD_SEGMENTS;
    if let Some((_, s)) = short.segments.first_mut() {
        s.truncate(80);
    }
    seeds.push(("short-segment", short.to_bytes()));

    // Torn tail: the last record cut short.
    let mut torn = Image::parse(&log_only);
    if let Some((_, s)) = torn.segments.first_mut() {
        s.truncate(s.len() - 3);
    }
    seeds.push(("torn-tail", torn.to_bytes()));
    seeds
}

#[test]
#[ignore = "writes the seed corpora into fuzz/corpus; run by hand after a format change"]
fn regenerate_seed_corpora() {
    write_seeds("decode_record", &record_seeds());
    write_seeds("decode_segment_header", &segment_header_seeds());
    write_seeds("decode_checkpoint", &checkpoint_seeds());
    write_seeds("open_dir", &open_dir_seeds());
    write_seeds("decode_batch", &batch_seeds());
}
