//! The checkpoint file: a snapshot of the queue and of where replay must start.
//!
//! # Format (little-endian)
//! ```text
//! offset size       field
//!  0      8          magic          "TIDEGCKP"
//!  8      2          version        FORMAT_VERSION (1)
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
//! ..      8          queue_len      Q
//! ..      12*Q       queue          segment u32 | offset u64 of each queued Put record, head first
//! ..      4          crc            CRC-32 (IEEE) of every byte before it
//! ```
//! The tail's segment id names the data directory the entry belongs to (segment ids are unique
//! across directories). Do not reorder fields.

use super::{DecodeError, FORMAT_VERSION, MAX_COUNTER, Reader, Writer, crc32};
use crate::ids::{LogPosition, RecordPtr, SegmentId};

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

/// Encodes a checkpoint.
pub fn encode(c: &Checkpoint) -> Vec<u8> {
    let mut buf =
        Vec::with_capacity(96 + c.dirs.len() * 24 + c.committing.len() * 8 + c.queue.len() * 12);
    let mut w = Writer::new(&mut buf);
    w.bytes(MAGIC);
    w.u16(FORMAT_VERSION);
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
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
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
