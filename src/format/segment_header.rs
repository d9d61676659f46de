//! The header at the start of every segment file.
//!
//! # Format (64 bytes, little-endian)
//! ```text
//! offset size field
//!  0      8   magic      "TIDEGSEG"
//!  8      2   version    1; 2 (BATCH_FORMAT_VERSION) if the segment may hold PutBatch records;
//!                        3 (RECYCLED_FORMAT_VERSION) for a recycled segment (PutBatch allowed)
//! 10      2   flags      0 (reserved)
//! 12      4   reserved   0
//! 16      8   segment id (equals the id in the file name; fits in 32 bits)
//! 24      8   created    milliseconds since the Unix epoch (informational)
//! 32      8   floor      version 3: every record of this segment has a sequence number above
//!                        this; bytes after its records are left from the file's earlier use
//!                        (0 and ignored in versions 1 and 2)
//! 40     20   reserved   0
//! 60      4   crc        CRC-32 (IEEE) of bytes 0..60
//! ```
//! Records start at byte 64. Do not reorder fields.
//!
//! A version 1 or 2 segment is created full of zeros: its records end at a header of 32 zero
//! bytes. A version 3 segment is a collected segment's file reused without zeroing it: its
//! records end at its own end marker ([`super::record::end_marker`]), which every append writes
//! after its records, or at the end of the file.

use super::{DecodeError, FORMAT_VERSION, RECYCLED_FORMAT_VERSION, Reader, Writer, crc32};

/// Length of the segment header; the first record starts here.
pub const LEN: usize = 64;
/// Magic number.
pub const MAGIC: &[u8; 8] = b"TIDEGSEG";

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Segment id.
    pub segment_id: u32,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// [`FORMAT_VERSION`], [`BATCH_FORMAT_VERSION`](super::BATCH_FORMAT_VERSION) or [`RECYCLED_FORMAT_VERSION`].
    pub version: u16,
    /// Version 3: every record of the segment has a sequence number above this. 0 otherwise.
    pub floor: u64,
}

impl SegmentHeader {
    /// The header of a new segment of `version` (1 or 2: a zero-filled one).
    pub fn new(segment_id: u32, created_ms: u64, version: u16) -> Self {
        SegmentHeader {
            segment_id,
            created_ms,
            version,
            floor: 0,
        }
    }

    /// The header of a recycled segment whose records all have sequence numbers above `floor`.
    pub fn recycled(segment_id: u32, created_ms: u64, floor: u64) -> Self {
        SegmentHeader {
            segment_id,
            created_ms,
            version: RECYCLED_FORMAT_VERSION,
            floor,
        }
    }

    /// True for a recycled (version 3) segment.
    pub fn is_recycled(&self) -> bool {
        self.version == RECYCLED_FORMAT_VERSION
    }
}

/// Encodes the header (the floor is written only in version 3).
pub fn encode(h: &SegmentHeader) -> Vec<u8> {
    let mut buf = Vec::with_capacity(LEN);
    let mut w = Writer::new(&mut buf);
    w.bytes(MAGIC);
    w.u16(h.version);
    w.u16(0);
    w.u32(0);
    w.u64(u64::from(h.segment_id));
    w.u64(h.created_ms);
    w.u64(if h.is_recycled() { h.floor } else { 0 });
    w.bytes(&[0u8; 20]);
    let crc = crc32(&buf);
    Writer::new(&mut buf).u32(crc);
    buf
}

/// Decodes and checks a header.
pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, DecodeError> {
    let mut r = Reader::new(bytes);
    let magic = r.take(8)?;
    if magic != MAGIC {
        return Err(DecodeError::BadMagic {
            found: magic.to_vec(),
        });
    }
    let version = r.u16()?;
    let _flags = r.u16()?;
    let _reserved = r.u32()?;
    let id = r.u64()?;
    let created_ms = r.u64()?;
    let floor = r.u64()?;
    r.take(20)?;
    let stored = r.u32()?;
    let computed = crc32(&bytes[..60]);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    if !(FORMAT_VERSION..=RECYCLED_FORMAT_VERSION).contains(&version) {
        return Err(DecodeError::UnsupportedVersion {
            found: version,
            supported: RECYCLED_FORMAT_VERSION,
        });
    }
    let floor = if version == RECYCLED_FORMAT_VERSION {
        if floor > super::MAX_COUNTER {
            return Err(DecodeError::Invalid {
                field: "segment floor sequence number",
                value: floor,
            });
        }
        floor
    } else {
        0
    };
    let segment_id = u32::try_from(id).map_err(|_| DecodeError::Invalid {
        field: "segment id",
        value: id,
    })?;
    Ok(SegmentHeader {
        segment_id,
        created_ms,
        version,
        floor,
    })
}

#[cfg(test)]
mod tests {
    use super::super::BATCH_FORMAT_VERSION;
    use super::*;

    #[test]
    fn round_trip_and_flip() {
        let h = SegmentHeader::new(17, 1234, FORMAT_VERSION);
        let bytes = encode(&h);
        assert_eq!(bytes.len(), LEN);
        assert_eq!(decode(&bytes), Ok(h));
        for i in 0..LEN {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip at {i} not detected");
        }
        let h2 = SegmentHeader::new(17, 1234, BATCH_FORMAT_VERSION);
        assert_eq!(decode(&encode(&h2)), Ok(h2));
        let h3 = SegmentHeader::recycled(17, 1234, 99);
        let v3 = encode(&h3);
        assert_eq!(decode(&v3), Ok(h3));
        assert_eq!(&v3[32..40], &99u64.to_le_bytes());
        for i in 0..LEN {
            let mut bad = v3.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip at {i} not detected");
        }
        // A floor written into a version 2 header's reserved bytes is not read.
        let mut v2_floor = SegmentHeader::new(17, 1234, BATCH_FORMAT_VERSION);
        v2_floor.floor = 99;
        assert_eq!(decode(&encode(&v2_floor)).map(|h| h.floor), Ok(0));
        let v4 = encode(&SegmentHeader::new(17, 1234, RECYCLED_FORMAT_VERSION + 1));
        assert!(matches!(
            decode(&v4),
            Err(DecodeError::UnsupportedVersion { found: 4, .. })
        ));
        assert!(matches!(
            decode(&bytes[..10]),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
