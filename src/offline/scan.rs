//! A walk over every record of every segment, with replay's own checks, that lists every
//! problem instead of stopping at the first.
//!
//! Per data directory, segments are read in id order. Each segment's header is checked (a
//! damaged header is a problem; its records are still walked, since `repair` can rewrite the
//! header). Records are read from byte 64 with `replay::read_record` in full mode (header CRC,
//! bounds, payload CRC, and a sequence number above the previous record's in the directory;
//! replay itself checks Put payloads only in the newest segment) until a zero header, the end
//! marker. A record that fails is classified as replay classifies it:
//!
//! - when a valid record follows it in the same segment (`replay::resync`), the bytes up to that
//!   record are a **damaged region** in the middle of the log;
//! - when nothing valid follows it in its segment but a later segment of the directory holds
//!   records, the bytes up to the segment's last non-zero byte are a damaged region at the
//!   **end of a segment**;
//! - otherwise it is the directory's **torn tail** (an unfinished write at a crash; an open
//!   zeroes it). Non-zero bytes after the end marker of the newest segment are a torn tail too.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::record::{HEADER_LEN, RecordHeader};
use crate::format::{DecodeError, file_name, segment_header};
use crate::ids::SegmentId;
use crate::io::FileSystem;
use crate::replay::{self, BodyCheck, Payload};
use crate::segment::{self, Segment};

/// What kind of problem a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A segment header that does not decode, or names another segment id.
    SegmentHeader,
    /// Records that fail their checks with valid records after them.
    DamagedRecords,
    /// An unfinished write at the end of a directory's log: not damage, an open zeroes it.
    TornTail,
    /// A checkpoint file that does not decode, or that replay does not use because it does not
    /// agree with the log.
    Checkpoint,
}

impl ProblemKind {
    /// A short stable label.
    pub fn label(self) -> &'static str {
        match self {
            ProblemKind::SegmentHeader => "segment_header",
            ProblemKind::DamagedRecords => "damaged_records",
            ProblemKind::TornTail => "torn_tail",
            ProblemKind::Checkpoint => "checkpoint",
        }
    }
}

/// One problem, with its file and offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What it is.
    pub kind: ProblemKind,
    /// The file.
    pub path: PathBuf,
    /// Where it starts.
    pub offset: u64,
    /// How many bytes it covers (0 when unknown or not applicable).
    pub len: u64,
    /// What is wrong, in words.
    pub detail: String,
}

impl Problem {
    /// False for a torn tail (which an open repairs by itself), true for everything else.
    pub fn is_damage(&self) -> bool {
        self.kind != ProblemKind::TornTail
    }
}

/// One segment as the scan found it.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// Segment id.
    pub id: u32,
    /// Index of its data directory.
    pub dir: usize,
    /// Its file.
    pub path: PathBuf,
    /// File size in bytes.
    pub file_len: u64,
    /// When it was created (ms since the epoch), from an intact header.
    pub created_ms: Option<u64>,
    /// Valid records.
    pub records: u64,
    /// Bytes of valid records.
    pub record_bytes: u64,
    /// Offset just past the last valid record.
    pub valid_end: u64,
}

/// Where a damaged region sits, for `repair`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// A valid record of the same segment follows.
    Middle {
        /// Sequence number of the record that follows.
        next_seq: u64,
    },
    /// Nothing valid follows in the segment (a later segment holds records).
    SegmentEnd,
    /// The directory's torn tail.
    Tail,
}

/// A range of bytes that failed the checks.
#[derive(Debug, Clone)]
pub(crate) struct Region {
    pub(crate) segment: Arc<Segment>,
    pub(crate) offset: u64,
    pub(crate) end: u64,
    /// Sequence number of the last valid record before it in the directory.
    pub(crate) seq_before: u64,
    pub(crate) placement: Placement,
    /// Headers that still decode inside the region (CRC failed), with their offsets.
    pub(crate) headers: Vec<(u64, RecordHeader)>,
}

/// A valid record, as the scan hands it to a visitor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Visited<'a> {
    pub(crate) segment: &'a Segment,
    pub(crate) offset: u64,
    pub(crate) header: RecordHeader,
    pub(crate) payload: Payload,
}

/// Everything the scan found.
#[derive(Debug, Default)]
pub(crate) struct LogScan {
    pub(crate) segments: Vec<SegmentInfo>,
    pub(crate) problems: Vec<Problem>,
    pub(crate) regions: Vec<Region>,
    /// Segments whose header is damaged.
    pub(crate) bad_headers: Vec<Arc<Segment>>,
    pub(crate) records: u64,
    pub(crate) record_bytes: u64,
}

/// Scans every segment of every data directory; `visit` sees each valid record.
pub(crate) fn scan(
    fs: &dyn FileSystem,
    data_dirs: &[PathBuf],
    visit: &mut dyn FnMut(Visited<'_>),
) -> Result<LogScan> {
    let mut out = LogScan::default();
    for (index, dir) in data_dirs.iter().enumerate() {
        let names = fs
            .list_dir(dir)
            .map_err(|e| Error::io("listing data dir", dir, e))?;
        let mut ids: Vec<u32> = names
            .iter()
            .filter_map(|n| file_name::parse_segment(n))
            .collect();
        ids.sort_unstable();
        let mut segments = Vec::with_capacity(ids.len());
        for id in ids {
            let path = dir.join(file_name::segment(id));
            segments.push(Arc::new(segment::open(fs, index, path, SegmentId(id))?));
        }
        scan_dir(&segments, &mut out, visit);
    }
    Ok(out)
}

fn check_header(seg: &Segment) -> std::result::Result<u64, DecodeError> {
    let mut header = [0u8; segment_header::LEN];
    seg.map
        .read_into(0, &mut header)
        .map_err(|_| DecodeError::Truncated {
            needed: segment_header::LEN as u64,
            available: seg.map.len(),
        })?;
    let h = segment_header::decode(&header)?;
    if h.segment_id != seg.id.0 {
        return Err(DecodeError::Invalid {
            field: "segment id (differs from file name)",
            value: u64::from(h.segment_id),
        });
    }
    Ok(h.created_ms)
}

/// Headers that decode inside `offset..end` (at most a few hundred are kept).
fn headers_in(seg: &Segment, offset: u64, end: u64) -> Vec<(u64, RecordHeader)> {
    let mut out = Vec::new();
    let mut pos = offset;
    while pos.saturating_add(HEADER_LEN as u64) <= end && out.len() < 256 {
        match seg.record_header(pos) {
            Ok(h) if pos.saturating_add(h.record_len()) <= end => {
                out.push((pos, h));
                pos += h.record_len();
            }
            _ => pos += 1,
        }
    }
    out
}

struct Bad {
    seg: Arc<Segment>,
    offset: u64,
    error: DecodeError,
    seq_before: u64,
}

fn scan_dir(segments: &[Arc<Segment>], out: &mut LogScan, visit: &mut dyn FnMut(Visited<'_>)) {
    let mut last_seq = 0u64;
    let mut pending: Option<Bad> = None;
    let newest = segments.len().saturating_sub(1);
    let first_unsealed = replay::first_unsealed(segments);
    for (i, seg) in segments.iter().enumerate() {
        let file_len = seg.map.len();
        let created_ms = match check_header(seg) {
            Ok(ms) => Some(ms),
            Err(e) => {
                out.problems.push(Problem {
                    kind: ProblemKind::SegmentHeader,
                    path: seg.path.clone(),
                    offset: 0,
                    len: segment_header::LEN as u64,
                    detail: format!("segment header: {e}"),
                });
                out.bad_headers.push(seg.clone());
                None
            }
        };
        let mut info = SegmentInfo {
            id: seg.id.0,
            dir: seg.dir,
            path: seg.path.clone(),
            file_len,
            created_ms,
            records: 0,
            record_bytes: 0,
            valid_end: segment_header::LEN as u64,
        };
        let mut off = segment_header::LEN as u64;
        // Which segments are sealed: there, a zero header with data after it is damage.
        let sealed = matches!(first_unsealed, Some(id) if seg.id < id);
        while off.saturating_add(HEADER_LEN as u64) <= file_len {
            if replay::at_log_end(seg, off, sealed) {
                break;
            }
            match replay::read_record(seg, off, last_seq, BodyCheck::Full) {
                Ok((header, payload)) => {
                    if let Some(b) = pending.take() {
                        damaged(out, b, Placement::SegmentEnd);
                    }
                    visit(Visited {
                        segment: seg,
                        offset: off,
                        header,
                        payload,
                    });
                    last_seq = header.seq;
                    info.records += 1;
                    info.record_bytes += header.record_len();
                    off += header.record_len();
                    info.valid_end = off;
                }
                Err(error) => match replay::resync(seg, off + 1, last_seq, BodyCheck::Full) {
                    Some(next) => {
                        let next_seq = seg.record_header(next).map_or(u64::MAX, |h| h.seq);
                        let b = Bad {
                            seg: seg.clone(),
                            offset: off,
                            error,
                            seq_before: last_seq,
                        };
                        let end = next;
                        region(out, b, end, Placement::Middle { next_seq });
                        off = next;
                    }
                    None => {
                        if let Some(b) = pending.take() {
                            damaged(out, b, Placement::SegmentEnd);
                        }
                        pending = Some(Bad {
                            seg: seg.clone(),
                            offset: off,
                            error,
                            seq_before: last_seq,
                        });
                        break;
                    }
                },
            }
        }
        // Leftover bytes after the end marker of the newest segment: an open zeroes them. (After
        // a recycled segment's end marker come the file's earlier contents, never read.)
        if i == newest && pending.is_none() && seg.recycled.is_none() {
            let end = seg.last_nonzero(off);
            if end > off {
                pending = Some(Bad {
                    seg: seg.clone(),
                    offset: off,
                    error: DecodeError::Invalid {
                        field: "bytes beyond the end of the log",
                        value: off,
                    },
                    seq_before: last_seq,
                });
            }
        }
        out.records += info.records;
        out.record_bytes += info.record_bytes;
        out.segments.push(info);
    }
    if let Some(b) = pending {
        damaged(out, b, Placement::Tail);
    }
}

fn damaged(out: &mut LogScan, b: Bad, placement: Placement) {
    let end = b.seg.last_nonzero(b.offset).max(b.offset);
    region(out, b, end, placement);
}

fn region(out: &mut LogScan, b: Bad, end: u64, placement: Placement) {
    let (kind, what) = match placement {
        Placement::Middle { .. } => (
            ProblemKind::DamagedRecords,
            "damaged record(s) with valid records after them",
        ),
        Placement::SegmentEnd => (
            ProblemKind::DamagedRecords,
            "damaged record(s) at the end of a segment, with valid records in a later segment",
        ),
        Placement::Tail => (
            ProblemKind::TornTail,
            "torn tail (an unfinished write at a crash; an open zeroes it)",
        ),
    };
    let len = end.saturating_sub(b.offset);
    out.problems.push(Problem {
        kind,
        path: b.seg.path.clone(),
        offset: b.offset,
        len,
        detail: format!("{what}: {} ({len} bytes)", b.error),
    });
    let headers = headers_in(&b.seg, b.offset, end);
    out.regions.push(Region {
        segment: b.seg,
        offset: b.offset,
        end,
        seq_before: b.seq_before,
        placement,
        headers,
    });
}
