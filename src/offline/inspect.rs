//! `inspect`: a summary of a channel that no process has open, and a record dump for debugging.
//!
//! The summary comes from replay run on a read-only view of the directories (see
//! the offline session's replay): it is exactly what an open would restore, and nothing on disk
//! changes (an open would zero a torn tail; `inspect` only reports it). The dump walks every
//! record with [`super::scan`]; it decodes encrypted events with the keys given (see
//! [`ChannelDirs::encryption`]) and names the key of those it cannot.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::scan::{self, Problem};
use super::{ChannelDirs, Session};
use crate::config::RecoveryMode;
use crate::error::Result;
use crate::format::DecodeError;
use crate::format::record::{FLAG_COMPRESSED, FLAG_ENCRYPTED, Kind, RecordHeader};
use crate::format::{checkpoint, file_name};
use crate::ids::RecordPtr;
use crate::replay::{self, Payload, RecoveryReport};

/// One queued event, as the log holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSummary {
    /// Where its Put record starts.
    pub ptr: RecordPtr,
    /// The record's sequence number (commit order within its directory).
    pub seq: u64,
    /// The transaction that put it.
    pub txn: u64,
    /// Stored payload bytes: the Put record's, or the event's share of its PutBatch's.
    pub payload_len: u32,
}

/// One segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Segment id.
    pub id: u32,
    /// Index of its data directory.
    pub dir: usize,
    /// Its file.
    pub path: PathBuf,
    /// File size.
    pub size: u64,
    /// A recycled segment (format version 3, DESIGN.md §4.6): a collected segment's file reused.
    pub recycled: bool,
    /// Queued events whose record is in it.
    pub live_events: u64,
}

/// The checkpoint replay would use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSummary {
    /// Generation.
    pub generation: u64,
    /// When it was written (ms since the epoch).
    pub created_ms: u64,
    /// How long ago that was.
    pub age: Duration,
    /// Events it lists.
    pub events: u64,
}

/// What `inspect` reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InspectReport {
    /// Events an open restores.
    pub events_queued: u64,
    /// Of those, takes in flight at the checkpoint (delivered again).
    pub in_flight: u64,
    /// Their payload bytes.
    pub bytes_queued: u64,
    /// The head of the queue.
    pub oldest: Option<EventSummary>,
    /// The tail of the queue.
    pub newest: Option<EventSummary>,
    /// Every segment, per directory in id order.
    pub segments: Vec<SegmentSummary>,
    /// The checkpoint replay uses.
    pub checkpoint: Option<CheckpointSummary>,
    /// Free bytes on the file system of the checkpoint directory, then of each data directory.
    pub free_space: Vec<(PathBuf, u64)>,
    /// What replay found (torn tails are reported, not zeroed).
    pub recovery: RecoveryReport,
}

/// Summarises the channel in `dirs` as an open in `mode` would restore it.
pub fn inspect(dirs: &ChannelDirs, mode: RecoveryMode) -> Result<InspectReport> {
    let session = Session::open(dirs)?;
    let rec = session.replay(mode)?;
    let summary = |ptr: Option<&RecordPtr>| -> Option<EventSummary> {
        let ptr = *ptr?;
        let seg = rec
            .dirs
            .iter()
            .flat_map(|d| d.segments.iter())
            .find(|s| s.id == ptr.segment)?;
        let h = seg.event_header(ptr).ok()?;
        // An event of a PutBatch: its share of the batch's stored length (DESIGN.md §3.5).
        let payload_len =
            match replay::read_record(seg, ptr.record_offset(), 0, replay::BodyCheck::Full) {
                Ok((_, Payload::Batch(n))) => {
                    crate::format::record::batch_share(h.len, n, ptr.index())
                }
                _ => h.len,
            };
        Some(EventSummary {
            ptr,
            seq: h.seq,
            txn: h.txn,
            payload_len,
        })
    };
    let segments = rec
        .dirs
        .iter()
        .flat_map(|d| d.segments.iter())
        .map(|s| SegmentSummary {
            id: s.id.0,
            dir: s.dir,
            path: s.path.clone(),
            size: s.map.len(),
            recycled: s.recycled.is_some(),
            live_events: rec.state.live.get(&s.id).copied().unwrap_or(0),
        })
        .collect();
    let checkpoint = rec.report.checkpoint_generation.and_then(|g| {
        let path = dirs.checkpoint_dir.join(file_name::checkpoint(g));
        let ck = replay::read_file(&*dirs.file_system, &path)
            .ok()
            .and_then(|b| checkpoint::decode(&b).ok())?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Some(CheckpointSummary {
            generation: g,
            created_ms: ck.created_ms,
            age: Duration::from_millis(now.saturating_sub(ck.created_ms)),
            events: ck.queue.len() as u64,
        })
    });
    let fs = &*dirs.file_system;
    let free_space = std::iter::once(&dirs.checkpoint_dir)
        .chain(&dirs.data_dirs)
        .filter_map(|d| fs.free_space(d).ok().map(|f| (d.clone(), f)))
        .collect();
    Ok(InspectReport {
        events_queued: rec.state.len() as u64,
        in_flight: rec.report.inflight_redelivered,
        bytes_queued: rec.state.queued_bytes,
        oldest: summary(rec.state.queue.front()),
        newest: summary(rec.state.queue.back()),
        segments,
        checkpoint,
        free_space,
        recovery: rec.report,
    })
}

/// One record of the dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpRecord {
    /// The segment file.
    pub path: PathBuf,
    /// Where the record starts.
    pub offset: u64,
    /// `put`, `take`, `commit` or `rollback`.
    pub kind: &'static str,
    /// Sequence number.
    pub seq: u64,
    /// Transaction id.
    pub txn: u64,
    /// Whole record size (header and payload).
    pub size: u64,
    /// For a Put: body size and event headers; for a Take: the event it took; for a Commit or
    /// Rollback: the transaction's record count.
    pub detail: String,
}

fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Put => "put",
        Kind::Take => "take",
        Kind::Commit => "commit",
        Kind::Rollback => "rollback",
        Kind::PutBatch => "put_batch",
    }
}

/// How a Put payload is stored, as a suffix of the dump's detail.
fn stored_form(h: &RecordHeader) -> String {
    let mut s = String::new();
    if h.flags & FLAG_COMPRESSED != 0 {
        s.push_str(", compressed");
    }
    if h.flags & FLAG_ENCRYPTED != 0 {
        s.push_str(&format!(", encrypted with key {}", h.key_id));
    }
    s
}

/// Hands every valid record of the channel in `dirs` to `out`, in log order per directory, and
/// returns the problems met on the way.
pub fn dump(dirs: &ChannelDirs, out: &mut dyn FnMut(DumpRecord)) -> Result<Vec<Problem>> {
    let session = Session::open(dirs)?;
    let view = session.view();
    let log = scan::scan(&*view, &dirs.data_dirs, &mut |v| {
        let detail = match v.payload {
            Payload::Take(ptr) => format!("takes {ptr}"),
            Payload::Count(n) => format!("{n} records"),
            Payload::Batch(n) => match session.read_batch(v.segment, v.offset, &v.header) {
                Ok(b) => {
                    let bodies: usize = (0..b.count())
                        .filter_map(|i| b.event(i as u16).ok())
                        .map(|ev| ev.body().len())
                        .sum();
                    format!(
                        "{n} events, bodies {bodies} B in all{}",
                        stored_form(&v.header)
                    )
                }
                Err(DecodeError::MissingKey { key_id }) => format!(
                    "{n} events encrypted with key {key_id}, which was not given (--key \
                     {key_id}=PATH, or --config with the channel's encryption)"
                ),
                Err(e) => format!("{n} events; payload does not decode: {e}"),
            },
            Payload::Put => match session.read_event(v.segment, v.offset, &v.header) {
                Ok(ev) => {
                    let headers: Vec<String> = ev
                        .headers()
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    format!(
                        "body {} B, headers {{{}}}{}",
                        ev.body().len(),
                        headers.join(", "),
                        stored_form(&v.header)
                    )
                }
                Err(DecodeError::MissingKey { key_id }) => format!(
                    "encrypted with key {key_id}, which was not given (--key {key_id}=PATH, or \
                     --config with the channel's encryption)"
                ),
                Err(e) => format!("payload does not decode: {e}"),
            },
        };
        out(DumpRecord {
            path: v.segment.path.clone(),
            offset: v.offset,
            kind: kind_label(v.header.kind),
            seq: v.header.seq,
            txn: v.header.txn,
            size: v.header.record_len(),
            detail,
        });
    })?;
    Ok(log.problems)
}
