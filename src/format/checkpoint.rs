//! The checkpoint file: a snapshot of the queue and of where replay must start.
//!
//! # Format (little-endian)
//! ```text
//! offset size       field
//!  0      8          magic          "TIDEGCKP"
//!  8      2          version        VERSION (2; version 1 is still read, below)
//! 10      2          flags          0 (reserved)
//! 12      4          reserved       0
//! 16      8          generation     increases by one per checkpoint
//! 24      8          created_ms     ms since the Unix epoch
//! 32      8          last_seq       highest sequence number assigned before the snapshot
//! 40      8          next_txn       transaction ids at or above this were never used
//! 48      8          queued_bytes   sum of the payload lengths of the queued events
//! 56      8          inflight       the first `inflight` queue entries were taken, not committed
//! 64      4          dir_count      D
//! 68      24*D       dirs           per data directory:
//!                                     tail       segment u32 | offset u64  (log end at snapshot)
//!                                     scan_start segment u32 | offset u64  (replay starts here)
//! ..      4          committing     C: transactions whose Commit record lies before `tail` but
//!                                   whose effect is not in the snapshot
//! ..      8*C        txn ids
//! ..      4          pin_count      P: segments that must outlive the events they committed
//! ..      8*P        commit_pins    put_segment u32 | commit_segment u32: `commit_segment` holds
//!                                   the Commit record of events still queued in `put_segment`
//! ..      8          queue_len      Q: queued events, head first, in runs:
//! ..      4          run_count      R
//! ..      16*R+4*(Q-R) runs          per run:
//!                                     segment u32
//!                                     count   u32  events in the run (>= 1)
//!                                     first   u64  pointer of its first event (offset | index << 48)
//!                                     (count - 1) x step u32, each giving the next event from
//!                                       the one before: 0 = the next event of the same PutBatch
//!                                       record (index + 1); n > 0 = event 0 of the record
//!                                       n bytes further on in the same segment
//! ..      4          crc            CRC-32 (IEEE) of every byte before it
//! ```
//! The tail's segment id names the data directory the entry belongs to (segment ids are unique
//! across directories). Do not reorder fields.
//!
//! A queue in log order (the usual case) is one run per segment and costs 4 bytes per event.
//! Version 1 (written until November 2026) stored the queue as `queue_len` (Q, u64) then
//! `segment u32 | offset u64` per event, 12 bytes each; [`decode`] reads both versions, [`encode`]
//! writes version 2.

use super::{DecodeError, MAX_COUNTER, Reader, Writer, crc32};
use crate::ids::{LogPosition, RECORD_OFFSET_MASK, RecordPtr, SegmentId};

/// The version [`encode`] writes.
pub const VERSION: u16 = 2;
/// The first version, still read: the queue as 12 bytes per event.
pub const VERSION_1: u16 = 1;

/// Magic number.
pub const MAGIC: &[u8; 8] = b"TIDEGCKP";

/// Where one data directory's log stood at the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirCheckpoint {
    /// End of the log at the snapshot: records before it are reflected in the queue, except the
    /// commits listed in `committing`.
    pub tail: LogPosition,
    /// Where replay must start reading (before `tail` when a transaction that had already
    /// written Put records was still open).
    pub scan_start: LogPosition,
}

/// A decoded checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Generation number.
    pub generation: u64,
    /// Creation time.
    pub created_ms: u64,
    /// Highest sequence number assigned before the snapshot.
    pub last_seq: u64,
    /// Lowest transaction id never used.
    pub next_txn: u64,
    /// Sum of payload lengths of queued events.
    pub queued_bytes: u64,
    /// How many of the first queue entries were in-flight takes.
    pub inflight: u64,
    /// One entry per data directory.
    pub dirs: Vec<DirCheckpoint>,
    /// Transactions whose commit record is before the tail but not applied in the snapshot.
    pub committing: Vec<u64>,
    /// `(put_segment, commit_segment)`: events queued in `put_segment` were committed by a
    /// record in `commit_segment` (a spilled or split transaction). Garbage collection keeps
    /// `commit_segment` while such events are queued, across restarts too, so that a full
    /// replay still finds their Commit (DESIGN.md §8).
    pub commit_pins: Vec<(SegmentId, SegmentId)>,
    /// The queue, head first.
    pub queue: Vec<RecordPtr>,
}

fn put_pos(w: &mut Writer<'_>, p: LogPosition) {
    w.u32(p.segment.0);
    w.u64(p.offset);
}

fn get_pos(r: &mut Reader<'_>) -> Result<LogPosition, DecodeError> {
    Ok(LogPosition::new(r.u32()?, r.u64()?))
}

/// The step (see the format) from event `a` to event `b`, when `b` can follow `a` in a run.
fn step(a: RecordPtr, b: RecordPtr) -> Option<u32> {
    if a.segment != b.segment {
        return None;
    }
    if b.record_offset() == a.record_offset() {
        return (a.index() < u16::MAX && b.index() == a.index() + 1).then_some(0);
    }
    if b.index() != 0 || b.record_offset() < a.record_offset() {
        return None;
    }
    u32::try_from(b.record_offset() - a.record_offset()).ok()
}

/// Splits the queue into runs: maximal stretches where each event follows the one before by a
/// step (and at most `u32::MAX` events).
fn runs(queue: &[RecordPtr]) -> Vec<&[RecordPtr]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=queue.len() {
        let ends = i == queue.len()
            || i - start >= u32::MAX as usize
            || step(queue[i - 1], queue[i]).is_none();
        if ends {
            out.push(&queue[start..i]);
            start = i;
        }
    }
    out
}

/// Reads a version 2 queue of `queue_len` events. Allocates at most one pointer per 4 bytes
/// of input.
fn decode_runs(r: &mut Reader<'_>, queue_len: u64) -> Result<Vec<RecordPtr>, DecodeError> {
    let run_count = r.u32()?;
    // Each event needs at least 4 bytes (a run's first one 16).
    if queue_len > (r.remaining() / 4) as u64 || u64::from(run_count) > queue_len {
        return Err(DecodeError::Invalid {
            field: "queue length",
            value: queue_len,
        });
    }
    let mut queue = Vec::with_capacity(queue_len as usize);
    for _ in 0..run_count {
        let segment = r.u32()?;
        let count = r.u32()?;
        let first = r.u64()?;
        if count == 0 || u64::from(count) > queue_len - queue.len() as u64 {
            return Err(DecodeError::Invalid {
                field: "queue run length",
                value: u64::from(count),
            });
        }
        let mut p = RecordPtr::new(segment, first);
        queue.push(p);
        for _ in 1..count {
            let step = r.u32()?;
            p = if step == 0 {
                let index = p.index().checked_add(1).ok_or(DecodeError::Invalid {
                    field: "queue step (event index past 65535)",
                    value: u64::from(p.index()),
                })?;
                p.with_index(index)
            } else {
                let offset = p.record_offset() + u64::from(step);
                if offset > RECORD_OFFSET_MASK {
                    return Err(DecodeError::Invalid {
                        field: "queue step (offset past 2^48)",
                        value: offset,
                    });
                }
                RecordPtr::new(segment, offset)
            };
            queue.push(p);
        }
    }
    if queue.len() as u64 != queue_len {
        return Err(DecodeError::Invalid {
            field: "queue length (runs hold fewer events)",
            value: queue_len,
        });
    }
    Ok(queue)
}

/// Reads a version 1 queue: 12 bytes per event.
fn decode_v1_queue(r: &mut Reader<'_>, queue_len: u64) -> Result<Vec<RecordPtr>, DecodeError> {
    if queue_len > (r.remaining() / 12) as u64 {
        return Err(DecodeError::Invalid {
            field: "queue length",
            value: queue_len,
        });
    }
    let mut queue = Vec::with_capacity(queue_len as usize);
    for _ in 0..queue_len {
        queue.push(RecordPtr::new(r.u32()?, r.u64()?));
    }
    Ok(queue)
}

/// Encodes a checkpoint (format version 2).
pub fn encode(c: &Checkpoint) -> Vec<u8> {
    let runs = runs(&c.queue);
    let mut buf = Vec::with_capacity(
        100 + c.dirs.len() * 24
            + c.committing.len() * 8
            + c.commit_pins.len() * 8
            + runs.len() * 12
            + c.queue.len() * 4,
    );
    let mut w = Writer::new(&mut buf);
    w.bytes(MAGIC);
    w.u16(VERSION);
    w.u16(0);
    w.u32(0);
    w.u64(c.generation);
    w.u64(c.created_ms);
    w.u64(c.last_seq);
    w.u64(c.next_txn);
    w.u64(c.queued_bytes);
    w.u64(c.inflight);
    w.u32(c.dirs.len() as u32);
    for d in &c.dirs {
        put_pos(&mut w, d.tail);
        put_pos(&mut w, d.scan_start);
    }
    w.u32(c.committing.len() as u32);
    for t in &c.committing {
        w.u64(*t);
    }
    w.u32(c.commit_pins.len() as u32);
    for (put, commit) in &c.commit_pins {
        w.u32(put.0);
        w.u32(commit.0);
    }
    w.u64(c.queue.len() as u64);
    w.u32(runs.len() as u32);
    for run in &runs {
        let first = run[0];
        w.u32(first.segment.0);
        w.u32(run.len() as u32);
        w.u64(first.offset);
        for pair in run.windows(2) {
            w.u32(step(pair[0], pair[1]).unwrap_or(0));
        }
    }
    let crc = crc32(&buf);
    Writer::new(&mut buf).u32(crc);
    buf
}

/// Encodes a checkpoint in format version 1 (12 bytes per queued event), which tidegate wrote
/// until November 2026: for tests of the version 1 decoder, and for tools that must write a file
/// an older tidegate reads (DESIGN.md §3.3, "Downgrading").
pub fn encode_v1(c: &Checkpoint) -> Vec<u8> {
    let v2 = encode(&Checkpoint {
        queue: Vec::new(),
        ..c.clone()
    });
    // Everything up to `queue_len` is the same; version 2 then has `run_count` and the CRC.
    let mut buf = v2[..v2.len() - 16].to_vec();
    buf[8..10].copy_from_slice(&VERSION_1.to_le_bytes());
    let mut w = Writer::new(&mut buf);
    w.u64(c.queue.len() as u64);
    for p in &c.queue {
        w.u32(p.segment.0);
        w.u64(p.offset);
    }
    let crc = crc32(&buf);
    Writer::new(&mut buf).u32(crc);
    buf
}

/// Decodes and checks a checkpoint.
pub fn decode(bytes: &[u8]) -> Result<Checkpoint, DecodeError> {
    if bytes.len() < 4 {
        return Err(DecodeError::Truncated {
            needed: 4,
            available: bytes.len() as u64,
        });
    }
    let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
    let mut r = Reader::new(body);
    let magic = r.take(8)?;
    if magic != MAGIC {
        return Err(DecodeError::BadMagic {
            found: magic.to_vec(),
        });
    }
    let stored = Reader::new(crc_bytes).u32()?;
    let computed = crc32(body);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    let version = r.u16()?;
    if version != VERSION && version != VERSION_1 {
        return Err(DecodeError::UnsupportedVersion {
            found: version,
            supported: VERSION,
        });
    }
    let _flags = r.u16()?;
    let _reserved = r.u32()?;
    let generation = r.u64()?;
    let created_ms = r.u64()?;
    let last_seq = r.u64()?;
    let next_txn = r.u64()?;
    if last_seq > MAX_COUNTER {
        return Err(DecodeError::Invalid {
            field: "checkpoint last_seq",
            value: last_seq,
        });
    }
    if next_txn > MAX_COUNTER {
        return Err(DecodeError::Invalid {
            field: "checkpoint next_txn",
            value: next_txn,
        });
    }
    let queued_bytes = r.u64()?;
    let inflight = r.u64()?;
    let dir_count = r.count("dir count", 24)?;
    let mut dirs = Vec::with_capacity(dir_count);
    for _ in 0..dir_count {
        let tail = get_pos(&mut r)?;
        let scan_start = get_pos(&mut r)?;
        if scan_start > tail {
            return Err(DecodeError::Invalid {
                field: "scan start after tail",
                value: scan_start.offset,
            });
        }
        dirs.push(DirCheckpoint { tail, scan_start });
    }
    let committing_count = r.count("committing count", 8)?;
    let mut committing = Vec::with_capacity(committing_count);
    for _ in 0..committing_count {
        committing.push(r.u64()?);
    }
    let pin_count = r.count("commit pin count", 8)?;
    let mut commit_pins = Vec::with_capacity(pin_count);
    for _ in 0..pin_count {
        commit_pins.push((SegmentId(r.u32()?), SegmentId(r.u32()?)));
    }
    let queue_len = r.u64()?;
    let queue = if version == VERSION_1 {
        decode_v1_queue(&mut r, queue_len)?
    } else {
        decode_runs(&mut r, queue_len)?
    };
    if r.remaining() != 0 {
        return Err(DecodeError::Invalid {
            field: "checkpoint trailing bytes",
            value: r.remaining() as u64,
        });
    }
    if inflight > queue_len {
        return Err(DecodeError::Invalid {
            field: "in-flight count",
            value: inflight,
        });
    }
    Ok(Checkpoint {
        generation,
        created_ms,
        last_seq,
        next_txn,
        queued_bytes,
        inflight,
        dirs,
        committing,
        commit_pins,
        queue,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            generation: 3,
            created_ms: 99,
            last_seq: 1000,
            next_txn: 55,
            queued_bytes: 4096,
            inflight: 1,
            dirs: vec![DirCheckpoint {
                tail: LogPosition::new(4, 9000),
                scan_start: LogPosition::new(3, 64),
            }],
            committing: vec![53],
            commit_pins: vec![(SegmentId(3), SegmentId(4))],
            queue: vec![RecordPtr::new(3, 64), RecordPtr::new(4, 128)],
        }
    }

    #[test]
    fn round_trip() {
        let c = sample();
        assert_eq!(decode(&encode(&c)), Ok(c));
    }

    /// A queue with every kind of run boundary: PutBatch events, plain Puts, a rolled-back
    /// take back at the head (out of log order), another segment, an index at the limit, and a
    /// gap over 4 GiB.
    fn mixed_queue() -> Vec<RecordPtr> {
        let batch = RecordPtr::new(7, 4096);
        let mut q = vec![RecordPtr::new(7, 9000), RecordPtr::new(7, 9552)];
        q.extend((0..5).map(|i| batch.with_index(i)));
        q.extend([RecordPtr::new(7, 4200), RecordPtr::new(7, 4752)]);
        q.extend([RecordPtr::new(8, 64), RecordPtr::new(8, 64 + (5 << 30))]);
        q.extend([u16::MAX - 1, u16::MAX].map(|i| RecordPtr::new(8, 1 << 40).with_index(i)));
        q.push(RecordPtr::new(8, (1 << 40) + 100));
        q.push(RecordPtr::new(8, 100));
        q.push(RecordPtr::new(8, 100));
        q
    }

    #[test]
    fn queues_of_every_shape_round_trip() {
        for queue in [Vec::new(), vec![RecordPtr::new(1, 64)], mixed_queue()] {
            let c = Checkpoint {
                queue,
                inflight: 0,
                ..sample()
            };
            assert_eq!(decode(&encode(&c)), Ok(c));
        }
    }

    #[test]
    fn a_queue_in_log_order_costs_four_bytes_per_event() {
        let queue: Vec<RecordPtr> = (0..10_000u64)
            .map(|i| RecordPtr::new(3, 64 + i * 552))
            .collect();
        let c = Checkpoint { queue, ..sample() };
        let empty = Checkpoint {
            queue: Vec::new(),
            inflight: 0,
            ..sample()
        };
        let per_event = (encode(&c).len() - encode(&empty).len()) as f64 / 10_000.0;
        assert!(per_event < 4.01, "{per_event} bytes per event");
    }

    #[test]
    fn version_1_checkpoints_are_still_read() {
        let c = Checkpoint {
            queue: mixed_queue(),
            ..sample()
        };
        assert_eq!(decode(&encode_v1(&c)), Ok(c.clone()));
        let empty = Checkpoint {
            queue: Vec::new(),
            inflight: 0,
            ..sample()
        };
        assert_eq!(decode(&encode_v1(&empty)), Ok(empty));
    }

    /// Rewrites the trailing CRC after a change.
    fn fix_crc(mut bytes: Vec<u8>) -> Vec<u8> {
        let n = bytes.len() - 4;
        let crc = crc32(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn runs_that_do_not_add_up_are_refused_even_with_a_valid_crc() {
        let c = Checkpoint {
            queue: vec![RecordPtr::new(3, 64), RecordPtr::new(3, 128)],
            ..sample()
        };
        let bytes = encode(&c);
        // queue_len u64, run_count u32, then the run: segment, count, first, one step.
        let run_at = bytes.len() - 4 - 20;
        let count_at = run_at + 4;
        let step_at = run_at + 16;
        let patch = |at: usize, v: &[u8]| {
            let mut b = bytes.clone();
            b[at..at + v.len()].copy_from_slice(v);
            fix_crc(b)
        };
        for (what, bad) in [
            (
                "run longer than the queue",
                patch(count_at, &3u32.to_le_bytes()),
            ),
            ("empty run", patch(count_at, &0u32.to_le_bytes())),
            (
                "more runs than events",
                patch(run_at - 4, &3u32.to_le_bytes()),
            ),
            (
                "queue shorter than its runs",
                patch(run_at - 12, &1u64.to_le_bytes()),
            ),
            (
                "queue longer than its runs",
                patch(run_at - 12, &3u64.to_le_bytes()),
            ),
            ("a step past 2^48", {
                let mut b = bytes.clone();
                b[run_at + 8..run_at + 16].copy_from_slice(&RECORD_OFFSET_MASK.to_le_bytes());
                b[step_at..step_at + 4].copy_from_slice(&7u32.to_le_bytes());
                fix_crc(b)
            }),
            ("an index past 65535", {
                let mut b = bytes.clone();
                let last = RecordPtr::new(3, 64).with_index(u16::MAX).offset;
                b[run_at + 8..run_at + 16].copy_from_slice(&last.to_le_bytes());
                b[step_at..step_at + 4].copy_from_slice(&0u32.to_le_bytes());
                fix_crc(b)
            }),
        ] {
            assert!(
                matches!(
                    decode(&bad),
                    Err(DecodeError::Invalid { .. } | DecodeError::Truncated { .. })
                ),
                "{what}: {:?}",
                decode(&bad)
            );
        }
    }

    #[test]
    fn damage_is_detected() {
        let bytes = encode(&sample());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(decode(&bad).is_err(), "flip at {i} not detected");
        }
        for cut in 0..bytes.len() {
            assert!(
                decode(&bytes[..cut]).is_err(),
                "truncation to {cut} not detected"
            );
        }
    }
}
