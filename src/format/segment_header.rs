//! The header at the start of every segment file.
//!
//! # Format (64 bytes, little-endian)
//! ```text
//! offset size field
//!  0      8   magic      "TIDEGSEG"
//!  8      2   version    1, or 2 (BATCH_FORMAT_VERSION) if the segment may hold PutBatch records
//! 10      2   flags      0 (reserved)
//! 12      4   reserved   0
//! 16      8   segment id (equals the id in the file name; fits in 32 bits)
//! 24      8   created    milliseconds since the Unix epoch (informational)
//! 32     28   reserved   0
//! 60      4   crc        CRC-32 (IEEE) of bytes 0..60
//! ```
//! Records start at byte 64. Do not reorder fields.

use super::{BATCH_FORMAT_VERSION, DecodeError, FORMAT_VERSION, Reader, Writer, crc32};

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
}

/// Encodes the header with version 1 (no PutBatch records).
pub fn encode(h: &SegmentHeader) -> Vec<u8> {
    encode_version(h, FORMAT_VERSION)
}

/// Encodes the header with `version` ([`FORMAT_VERSION`] or [`BATCH_FORMAT_VERSION`]).
pub fn encode_version(h: &SegmentHeader, version: u16) -> Vec<u8> {
    let mut buf = Vec::with_capacity(LEN);
    let mut w = Writer::new(&mut buf);
    w.bytes(MAGIC);
    w.u16(version);
    w.u16(0);
    w.u32(0);
    w.u64(u64::from(h.segment_id));
    w.u64(h.created_ms);
    w.bytes(&[0u8; 28]);
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
    r.take(28)?;
    let stored = r.u32()?;
    let computed = crc32(&bytes[..60]);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    if version != FORMAT_VERSION && version != BATCH_FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            found: version,
            supported: BATCH_FORMAT_VERSION,
        });
    }
    let segment_id = u32::try_from(id).map_err(|_| DecodeError::Invalid {
        field: "segment id",
        value: id,
    })?;
    Ok(SegmentHeader {
        segment_id,
        created_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_flip() {
        let h = SegmentHeader {
            segment_id: 17,
            created_ms: 1234,
        };
        let bytes = encode(&h);
        assert_eq!(bytes.len(), LEN);
        assert_eq!(decode(&bytes), Ok(h));
        for i in 0..LEN {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip at {i} not detected");
        }
        let v2 = encode_version(&h, BATCH_FORMAT_VERSION);
        assert_eq!(decode(&v2), Ok(h));
        let v3 = encode_version(&h, BATCH_FORMAT_VERSION + 1);
        assert!(matches!(
            decode(&v3),
            Err(DecodeError::UnsupportedVersion { found: 3, .. })
        ));
        assert!(matches!(
            decode(&bytes[..10]),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
