//! Small value types that name things in the log.

use std::fmt;

/// A segment's id: unique across every data directory of a channel, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u32);

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where an event's record starts: a segment and a byte offset in it. 16 bytes in memory; this is
/// all the in-memory queue holds per event (bodies stay on disk).
///
/// `offset` packs two fields (DESIGN.md §3.5): bits 0..48 are the byte offset of the record in
/// the segment ([`RecordPtr::record_offset`]), bits 48..64 the index of the event inside a
/// PutBatch record ([`RecordPtr::index`]; 0 for a plain Put, and for every position in the log
/// that is not an event). Pointers written before PutBatch existed all have index 0, so the
/// encoding of Take records and checkpoint queues did not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordPtr {
    /// The segment.
    pub segment: SegmentId,
    /// Byte offset of the record's header in the segment file.
    pub offset: u64,
}

impl RecordPtr {
    /// A pointer to `offset` in `segment`.
    pub fn new(segment: u32, offset: u64) -> Self {
        RecordPtr {
            segment: SegmentId(segment),
            offset,
        }
    }

    /// The pointer to event `index` of the record this pointer's record starts.
    pub fn with_index(self, index: u16) -> Self {
        RecordPtr {
            segment: self.segment,
            offset: self.record_offset() | (u64::from(index) << INDEX_SHIFT),
        }
    }

    /// Byte offset of the record's header in the segment file (the index bits cleared).
    pub fn record_offset(&self) -> u64 {
        self.offset & RECORD_OFFSET_MASK
    }

    /// Index of the event inside its PutBatch record (0 for a plain Put).
    pub fn index(&self) -> u16 {
        (self.offset >> INDEX_SHIFT) as u16
    }

    /// The pointer to the record itself (index 0).
    pub fn record(&self) -> Self {
        self.with_index(0)
    }
}

/// Where the event index starts in [`RecordPtr::offset`].
pub const INDEX_SHIFT: u32 = 48;
/// The bits of [`RecordPtr::offset`] that hold the record's byte offset. Segments are far
/// smaller than 2^48 bytes (config validation bounds `max_segment_size`).
pub const RECORD_OFFSET_MASK: u64 = (1 << INDEX_SHIFT) - 1;

impl fmt::Display for RecordPtr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segment {} offset {}",
            self.segment,
            self.record_offset()
        )?;
        if self.index() != 0 {
            write!(f, " event {}", self.index())?;
        }
        Ok(())
    }
}

/// A position in one data directory's log (same shape as a [`RecordPtr`]; ordered by segment,
/// then offset, which is log order within a directory).
pub type LogPosition = RecordPtr;
