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

/// Where a record starts: a segment and a byte offset in it. 16 bytes in memory; this is all the
/// in-memory queue holds per event (bodies stay on disk).
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
}

impl fmt::Display for RecordPtr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "segment {} offset {}", self.segment, self.offset)
    }
}

/// A position in one data directory's log (same shape as a [`RecordPtr`]; ordered by segment,
/// then offset, which is log order within a directory).
pub type LogPosition = RecordPtr;
