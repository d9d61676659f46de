//! The bodies of tidegate's fuzz targets, written once and run two ways: by the cargo-fuzz
//! targets in `fuzz/fuzz_targets/`, and by the main crate's `tests/fuzz_corpus.rs`, which
//! includes this file with `#[path]` and runs every file of `fuzz/corpus/<target>/` through it.
//!
//! Nothing here may panic on any input. The few asserts are properties of the code under test
//! (a decoded value re-encodes to bytes that decode to the same value; a channel that opened,
//! drained and closed cleanly opens again, empty): a failing one is a bug found, like a panic.
//!
//! This file must compile both inside the `tidegate-fuzz` crate and as a module of an
//! integration test of `tidegate`, so it uses only `tidegate`, `tempfile` and `std`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tidegate::at_rest::{Compression, PayloadCodec};
use tidegate::format::record::{self, Kind, RecordHeader};
use tidegate::format::{checkpoint, crc32, file_name, segment_header};
use tidegate::io::{FileSystem, MemFs, StdFs};
use tidegate::{Event, FileChannel, FileChannelConfig, RecoveryMode};

/// Record decoding: the header, the three payload decoders (on the bytes after the header,
/// without the CRC in the way, so they see arbitrary payloads), then the whole record as replay
/// reads it. Returns true when the record and its payload decoded.
pub fn decode_record(data: &[u8]) -> bool {
    let after_header = data.get(record::HEADER_LEN..).unwrap_or(&[]);
    let _ = record::decode_header(data);
    let _ = record::is_end_marker(data.get(..record::HEADER_LEN).unwrap_or(data));
    let _ = record::decode_put(after_header);
    let _ = record::decode_take(after_header);
    let _ = record::decode_marker(after_header);
    let _ = record::batch_count(after_header);

    let Ok((header, payload)) = record::decode(data) else {
        return false;
    };
    assert_eq!(payload.len() as u64, u64::from(header.len));
    match header.kind {
        Kind::Put if header.flags != 0 => decode_transformed_put(&header, payload),
        Kind::PutBatch => decode_put_batch(&header, payload),
        Kind::Put => match record::decode_put(payload) {
            Ok(event) => {
                let mut buf = Vec::new();
                let u = record::encode_put(&mut buf, header.txn, &event);
                record::seal(&mut buf, &u, header.seq);
                let (again, p) = record::decode(&buf).expect("a re-encoded Put decodes");
                same_header(&header, &again);
                assert_eq!(u64::from(again.len), record::put_payload_len(&event));
                assert_eq!(
                    record::decode_put(p).expect("re-encoded Put payload"),
                    event
                );
                true
            }
            Err(_) => false,
        },
        Kind::Take => {
            let ptr = record::decode_take(payload).expect("a 12-byte Take payload decodes");
            let mut buf = Vec::new();
            let u = record::encode_take(&mut buf, header.txn, ptr);
            record::seal(&mut buf, &u, header.seq);
            let (again, p) = record::decode(&buf).expect("a re-encoded Take decodes");
            same_header(&header, &again);
            assert_eq!(
                record::decode_take(p).expect("re-encoded Take payload"),
                ptr
            );
            true
        }
        Kind::Commit | Kind::Rollback => {
            let count = record::decode_marker(payload).expect("a 4-byte marker payload decodes");
            let mut buf = Vec::new();
            let u = record::encode_marker(&mut buf, header.kind, header.txn, count);
            record::seal(&mut buf, &u, header.seq);
            let (again, p) = record::decode(&buf).expect("a re-encoded marker decodes");
            same_header(&header, &again);
            assert_eq!(record::decode_marker(p).expect("re-encoded marker"), count);
            true
        }
    }
}

/// A compressed (or encrypted) Put: decoded without keys (so an encrypted one fails cleanly with
/// the key missing), decompressed within a bound; a decoded event re-encodes compressed to a
/// record that decodes to the same event.
fn decode_transformed_put(header: &RecordHeader, payload: &[u8]) -> bool {
    static CODEC: std::sync::OnceLock<Option<PayloadCodec>> = std::sync::OnceLock::new();
    let Some(codec) = CODEC.get_or_init(|| PayloadCodec::new(Compression::Lz4, 0, None).ok())
    else {
        return false;
    };
    let Ok(event) = record::decode_put_stored(header, payload, codec, 1 << 20) else {
        return false;
    };
    let mut buf = Vec::new();
    let u = record::encode_put_with(&mut buf, header.txn, &event, codec, &mut Vec::new());
    record::seal_with(&mut buf, &u, header.seq, codec).expect("no key needed");
    let (again, p) = record::decode(&buf).expect("a re-encoded Put decodes");
    same_header(header, &again);
    assert_eq!(
        record::decode_put_stored(&again, p, codec, 1 << 20).expect("re-encoded Put payload"),
        event
    );
    true
}

/// A PutBatch: decoded without keys (an encrypted one fails cleanly), decompressed within the
/// format's bound and split into its events; a decoded batch re-encodes (when it still
/// compresses) to a record that decodes to the same events.
fn decode_put_batch(header: &RecordHeader, payload: &[u8]) -> bool {
    static CODEC: std::sync::OnceLock<Option<PayloadCodec>> = std::sync::OnceLock::new();
    let Some(codec) = CODEC.get_or_init(|| {
        PayloadCodec::new(Compression::Lz4, 0, None)
            .ok()
            .map(|c| c.with_batching(true))
    }) else {
        return false;
    };
    let Ok(batch) = record::decode_batch_stored(header, payload, codec) else {
        return false;
    };
    let mut events = Vec::new();
    for i in 0..batch.count() {
        match batch.event(i as u16) {
            Ok(e) => events.push(e),
            Err(_) => return false,
        }
    }
    let shares: u64 = (0..batch.count())
        .map(|i| u64::from(batch.share(i as u16)))
        .sum();
    assert_eq!(
        shares,
        u64::from(header.len),
        "shares add up to the stored length"
    );
    let mut raw = Vec::new();
    for e in &events {
        record::write_batch_entry(&mut raw, e);
    }
    let mut buf = Vec::new();
    let Some(u) = record::encode_put_batch(&mut buf, header.txn, batch.count(), &raw, codec) else {
        return true; // the same events need not compress again (another codec wrote them)
    };
    record::seal_with(&mut buf, &u, header.seq, codec).expect("no key needed");
    let (again, p) = record::decode(&buf).expect("a re-encoded PutBatch decodes");
    same_header(header, &again);
    let back = record::decode_batch_stored(&again, p, codec).expect("re-encoded PutBatch");
    assert_eq!(back.count(), batch.count());
    for (i, e) in events.iter().enumerate() {
        assert_eq!(&back.event(i as u16).expect("event"), e);
    }
    true
}

fn same_header(a: &RecordHeader, b: &RecordHeader) {
    assert_eq!((a.seq, a.txn, a.kind), (b.seq, b.txn, b.kind));
}

/// Segment header decoding. Returns true when it decoded (and then its re-encoding decodes to
/// the same header).
pub fn decode_segment_header(data: &[u8]) -> bool {
    match segment_header::decode(data) {
        Ok(h) => {
            let again = segment_header::encode(&h);
            assert_eq!(again.len(), segment_header::LEN);
            assert_eq!(segment_header::decode(&again), Ok(h));
            true
        }
        Err(_) => false,
    }
}

/// Checkpoint decoding. Returns true when it decoded (and then the checkpoint is internally
/// consistent and its re-encoding decodes to the same value).
pub fn decode_checkpoint(data: &[u8]) -> bool {
    match checkpoint::decode(data) {
        Ok(c) => {
            assert!(c.inflight <= c.queue.len() as u64);
            assert!(c.dirs.iter().all(|d| d.scan_start <= d.tail));
            let again = checkpoint::encode(&c);
            assert_eq!(checkpoint::decode(&again).as_ref(), Ok(&c));
            true
        }
        Err(_) => false,
    }
}

/// The agent's batch formats (`tidegate::agent::wire`, what the HTTP source decodes from the
/// network): the JSON decoder, the binary one on the bytes with their last four replaced by the
/// right CRC (so mutations reach the parser behind the checksum), then the binary one on the
/// bytes as given. Returns true when the bytes are a binary batch; its events then re-encode to
/// a batch that decodes to the same events.
pub fn decode_batch(data: &[u8]) -> bool {
    use tidegate::agent::wire;
    let _ = wire::decode_json(data);
    if let Some(content_len) = data.len().checked_sub(wire::CRC_LEN) {
        let mut fixed = data.to_vec();
        let crc = crc32(&fixed[..content_len]);
        fixed[content_len..].copy_from_slice(&crc.to_le_bytes());
        if let Ok(events) = wire::decode_binary(&fixed) {
            let again = wire::encode_binary(&events).expect("decoded events re-encode");
            assert_eq!(
                wire::decode_binary(&again).expect("re-encoded batch decodes"),
                events
            );
        }
    }
    match wire::decode_binary(data) {
        Ok(events) => {
            let again = wire::encode_binary(&events).expect("decoded events re-encode");
            assert!(again.len() <= data.len(), "re-encoding grew the batch");
            assert_eq!(
                wire::decode_binary(&again).expect("re-encoded batch decodes"),
                events
            );
            true
        }
        Err(_) => false,
    }
}

/// `max_segment_size` of the channels `open_dir` opens.
pub const SEGMENT_SIZE: u64 = 4096;
/// `max_event_size` of the channels `open_dir` opens.
pub const MAX_EVENT_SIZE: u64 = 1024;

/// Image flag: recompute every CRC (checkpoint, segment headers, and each record that a walk
/// from byte 64 finds with a decodable header), so the fuzzer gets past the checksums.
pub const FIX_CRCS: u8 = 1 << 0;
/// Image flag: pad each segment with zeros up to `SEGMENT_SIZE` (real segments are full size;
/// seeds store them with their trailing zeros cut).
pub const PAD_SEGMENTS: u8 = 1 << 1;
/// Image flag: the second segment goes in a second data directory.
pub const SECOND_DIR: u8 = 1 << 2;
/// Image flag: name the checkpoint file after the generation stored in it (bytes 16..24),
/// not generation 1.
pub const NAME_BY_GENERATION: u8 = 1 << 3;
/// Image flag: once open, put and commit one event before draining.
pub const PUT_ONE: u8 = 1 << 4;
/// Image flag: use the real file system (`StdFs`, in a scratch directory on tmpfs when there is
/// one) instead of the in-memory `MemFs`: slower, but it runs the real file and map code.
pub const REAL_FS: u8 = 1 << 5;

/// Length of the image header.
pub const IMAGE_HEADER_LEN: usize = 7;

/// A directory image, the input of `open_dir`:
///
/// ```text
/// 0     1  flags (FIX_CRCS | PAD_SEGMENTS | SECOND_DIR | NAME_BY_GENERATION | PUT_ONE |
///          REAL_FS; other bits ignored)
/// 1     1  id of segment 1 (0 = no segment 1)
/// 2     1  id of segment 2 (0 = no segment 2; equal to segment 1's = no segment 2)
/// 3     2  checkpoint length C, u16 LE (0 = no checkpoint file)
/// 5     2  segment 1 length S, u16 LE
/// 7     C  checkpoint file
/// 7+C   S  segment 1 file
/// ..       segment 2 file: the rest
/// ```
/// Short inputs read as if padded with zeros; lengths are cut to the bytes that remain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Flags.
    pub flags: u8,
    /// The checkpoint file (none when empty).
    pub checkpoint: Vec<u8>,
    /// Segment files: id and bytes.
    pub segments: Vec<(u32, Vec<u8>)>,
}

impl Image {
    /// Reads an image from fuzzer bytes.
    pub fn parse(data: &[u8]) -> Image {
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        let flags = byte(0);
        let (id1, id2) = (byte(1), byte(2));
        let ck_len = usize::from(u16::from_le_bytes([byte(3), byte(4)]));
        let s1_len = usize::from(u16::from_le_bytes([byte(5), byte(6)]));
        let mut rest = data.get(IMAGE_HEADER_LEN..).unwrap_or(&[]);
        let mut take = |n: usize| {
            let (a, b) = rest.split_at(n.min(rest.len()));
            rest = b;
            a.to_vec()
        };
        let checkpoint = take(ck_len);
        let seg1 = take(s1_len);
        let seg2 = take(usize::MAX);
        let mut segments = Vec::new();
        if id1 != 0 {
            segments.push((u32::from(id1), seg1));
        }
        if id2 != 0 && id2 != id1 {
            segments.push((u32::from(id2), seg2));
        }
        Image {
            flags,
            checkpoint,
            segments,
        }
    }

    /// The bytes `parse` reads back as this image (checkpoint and first segment at most
    /// 65,535 bytes; segment ids at most 255).
    pub fn to_bytes(&self) -> Vec<u8> {
        let id = |i: usize| {
            self.segments.get(i).map_or(0, |(id, _)| {
                u8::try_from(*id).expect("segment id fits a byte")
            })
        };
        let len16 = |n: usize| u16::try_from(n).expect("length fits u16").to_le_bytes();
        let seg = |i: usize| self.segments.get(i).map_or(&[][..], |(_, b)| &b[..]);
        let mut out = vec![self.flags, id(0), id(1)];
        out.extend_from_slice(&len16(self.checkpoint.len()));
        out.extend_from_slice(&len16(seg(0).len()));
        out.extend_from_slice(&self.checkpoint);
        out.extend_from_slice(seg(0));
        out.extend_from_slice(seg(1));
        out
    }

    /// Writes the image into `fs` as a channel's directories under `root`; returns the
    /// checkpoint directory and the data directories.
    pub fn write(
        &self,
        fs: &dyn FileSystem,
        root: &Path,
    ) -> std::io::Result<(PathBuf, Vec<PathBuf>)> {
        let write_file = |path: &Path, bytes: &[u8]| fs.create_new(path)?.write_all_at(bytes, 0);
        let ckpt_dir = root.join("checkpoint");
        let mut data_dirs = vec![root.join("data")];
        if self.flags & SECOND_DIR != 0 {
            data_dirs.push(root.join("data2"));
        }
        fs.create_dir_all(&ckpt_dir)?;
        for d in &data_dirs {
            fs.create_dir_all(d)?;
        }
        if !self.checkpoint.is_empty() {
            let mut bytes = self.checkpoint.clone();
            if self.flags & FIX_CRCS != 0 && bytes.len() >= 4 {
                let body = bytes.len() - 4;
                let crc = crc32(&bytes[..body]);
                bytes[body..].copy_from_slice(&crc.to_le_bytes());
            }
            let generation = match bytes.get(16..24) {
                Some(g) if self.flags & NAME_BY_GENERATION != 0 => {
                    let mut le = [0u8; 8];
                    le.copy_from_slice(g);
                    u64::from_le_bytes(le)
                }
                _ => 1,
            };
            write_file(&ckpt_dir.join(file_name::checkpoint(generation)), &bytes)?;
        }
        for (i, (id, bytes)) in self.segments.iter().enumerate() {
            let mut bytes = bytes.clone();
            if self.flags & FIX_CRCS != 0 {
                fix_segment_crcs(&mut bytes);
            }
            if self.flags & PAD_SEGMENTS != 0 && (bytes.len() as u64) < SEGMENT_SIZE {
                bytes.resize(SEGMENT_SIZE as usize, 0);
            }
            let dir = &data_dirs[i.min(data_dirs.len() - 1)];
            write_file(&dir.join(file_name::segment(*id)), &bytes)?;
        }
        Ok((ckpt_dir, data_dirs))
    }
}

/// Recomputes a segment's header CRC and the CRC of each record a walk from byte 64 finds.
fn fix_segment_crcs(seg: &mut [u8]) {
    if seg.len() < segment_header::LEN {
        return;
    }
    let crc = crc32(&seg[..60]);
    seg[60..64].copy_from_slice(&crc.to_le_bytes());
    let mut off = segment_header::LEN;
    while let Some(rest) = seg.get_mut(off..) {
        if rest.len() < record::HEADER_LEN || record::is_end_marker(&rest[..record::HEADER_LEN]) {
            break;
        }
        match record::reseal(rest) {
            Some(len) => off += len,
            None => break,
        }
    }
}

/// What one `open_dir` run did in one recovery mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// Events taken and committed.
    pub drained: usize,
    /// The drain ended on an empty take (not on an error), and close succeeded.
    pub clean: bool,
}

/// What `open_dir` did: per recovery mode, `None` if the channel refused to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOutcome {
    /// Strict mode.
    pub strict: Option<Opened>,
    /// Skip mode.
    pub skip: Option<Opened>,
}

/// A scratch directory, on tmpfs when there is one (syncs are free there).
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::Builder::new()
            .prefix("tidegate-fuzz-")
            .tempdir_in(shm)
    {
        return d;
    }
    tempfile::Builder::new()
        .prefix("tidegate-fuzz-")
        .tempdir()
        .expect("a scratch directory")
}

fn config(
    fs: &Arc<dyn FileSystem>,
    ckpt: &Path,
    data: &[PathBuf],
    mode: RecoveryMode,
) -> FileChannelConfig {
    FileChannelConfig::new(ckpt, data.to_vec())
        .file_system(fs.clone())
        .max_segment_size(SEGMENT_SIZE)
        .max_event_size(MAX_EVENT_SIZE)
        .minimum_required_space(1 << 20)
        .recovery_mode(mode)
}

/// Opens, optionally puts one event, drains with `take_batch`, closes. `None` if it did not
/// open.
fn run_channel(cfg: FileChannelConfig, put_one: bool, max_batches: usize) -> Option<Opened> {
    let ch = FileChannel::open(cfg).ok()?;
    if put_one {
        let mut tx = ch.transaction();
        if tx
            .put(Event::new(b"fuzz".to_vec()).with_header("k", "v"))
            .is_ok()
        {
            let _ = tx.commit();
        }
    }
    let mut drained = 0;
    let mut emptied = false;
    for _ in 0..max_batches {
        let mut tx = ch.transaction();
        match tx.take_batch(64, Duration::ZERO) {
            Ok(events) if events.is_empty() => {
                emptied = true;
                break;
            }
            Ok(events) => {
                drained += events.len();
                if tx.commit().is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    assert!(
        emptied || drained < max_batches,
        "draining did not end after {max_batches} batches ({drained} events)"
    );
    let closed = ch.close().is_ok();
    Some(Opened {
        drained,
        clean: emptied && closed,
    })
}

/// Writes the image (into a `MemFs`, or with `REAL_FS` into a scratch directory), opens it in
/// strict mode, then (from a fresh copy) in skip mode; each time drains and closes. Errors are
/// fine. Checked: a strict open implies a skip open (draining the same events when neither
/// drain met damage), and a channel that drained and closed cleanly opens again, empty.
pub fn open_dir(data: &[u8]) -> OpenOutcome {
    let image = Image::parse(data);
    let put_one = image.flags & PUT_ONE != 0;
    // Events can number at most one per 12 input bytes (a checkpoint queue entry).
    let max_batches = 16 + data.len() / 8;
    let run = |mode: RecoveryMode| {
        let (fs, root, _scratch): (Arc<dyn FileSystem>, PathBuf, _) = if image.flags & REAL_FS != 0
        {
            let dir = scratch();
            (Arc::new(StdFs), dir.path().to_path_buf(), Some(dir))
        } else {
            (Arc::new(MemFs::new()), PathBuf::from("/fuzz"), None)
        };
        let (ckpt, data_dirs) = image.write(&*fs, &root).expect("writing the image");
        let opened = run_channel(config(&fs, &ckpt, &data_dirs, mode), put_one, max_batches);
        if let Some(o) = opened
            && o.clean
        {
            let again = run_channel(config(&fs, &ckpt, &data_dirs, mode), false, max_batches);
            assert_eq!(
                again,
                Some(Opened {
                    drained: 0,
                    clean: true
                }),
                "a channel that drained and closed cleanly in {mode:?} mode must reopen empty"
            );
        }
        opened
    };
    let strict = run(RecoveryMode::Strict);
    let skip = run(RecoveryMode::Skip);
    if let Some(s) = strict {
        let k = skip.expect("skip mode opens what strict mode opens");
        // A take can still meet a damaged record that replay did not read (one before the
        // checkpoint's tail): strict mode fails that take, skip mode drops the event. Only
        // drains that met no damage must agree.
        if s.clean && k.clean {
            assert_eq!(s.drained, k.drained, "strict and skip modes drain the same");
        }
    }
    OpenOutcome { strict, skip }
}
