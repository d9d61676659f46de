//! Quarantine files: bytes that `tidegate repair` moved out of a segment, kept beside it.
//!
//! A quarantine file is named `segment-{id:010}.log.{offset:020}.{created_ms}.quarantine` and
//! lives in the segment's data directory (replay ignores it: it matches no name replay reads).
//! It holds one damaged range of one segment, byte for byte, behind a fixed header:
//!
//! # Format (little-endian)
//! ```text
//! offset size field
//!  0      8   magic       "TIDEGQRN"
//!  8      2   version     FORMAT_VERSION (1)
//! 10      2   reason      1 = damaged records, 2 = torn tail, 3 = segment header
//! 12      4   reserved    0
//! 16      8   segment id  the segment the bytes came from
//! 24      8   offset      where in that segment they started
//! 32      8   len         how many bytes follow the header
//! 40      8   created_ms  when repair saved them (ms since the Unix epoch)
//! 48      4   bytes_crc   CRC-32 (IEEE) of the saved bytes
//! 52      8   reserved    0
//! 60      4   crc         CRC-32 (IEEE) of bytes 0..60
//! 64      len bytes       the bytes, exactly as they were in the segment
//! ```
//! To put the bytes back by hand: `dd if=FILE of=SEGMENT bs=1 skip=64 seek=OFFSET
//! count=LEN conv=notrunc`. Do not reorder fields.

use super::{DecodeError, FORMAT_VERSION, Reader, Writer, crc32};

/// Magic number.
pub const MAGIC: &[u8; 8] = b"TIDEGQRN";
/// Header length; the saved bytes follow it.
pub const HEADER_LEN: usize = 64;

/// Why bytes were quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Reason {
    /// Records that failed their checks.
    DamagedRecords = 1,
    /// An unfinished write at the end of the log.
    TornTail = 2,
    /// A damaged segment header (repair wrote a new one).
    SegmentHeader = 3,
}

/// A decoded quarantine file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Why.
    pub reason: Reason,
    /// The segment.
    pub segment_id: u32,
    /// Where the bytes were.
    pub offset: u64,
    /// When they were saved.
    pub created_ms: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// File name of a quarantine file.
pub fn file_name(segment_id: u32, offset: u64, created_ms: u64) -> String {
    format!("segment-{segment_id:010}.log.{offset:020}.{created_ms}.quarantine")
}

/// True for a quarantine file name.
pub fn is_file_name(name: &str) -> bool {
    name.starts_with("segment-") && name.ends_with(".quarantine")
}

/// Encodes a quarantine file.
pub fn encode(q: &Quarantined) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER_LEN + q.bytes.len());
    let mut w = Writer::new(&mut buf);
    w.bytes(MAGIC);
    w.u16(FORMAT_VERSION);
    w.u16(q.reason as u16);
    w.u32(0);
    w.u64(u64::from(q.segment_id));
    w.u64(q.offset);
    w.u64(q.bytes.len() as u64);
    w.u64(q.created_ms);
    w.u32(crc32(&q.bytes));
    w.u64(0);
    let crc = crc32(&buf);
    let mut w = Writer::new(&mut buf);
    w.u32(crc);
    w.bytes(&q.bytes);
    buf
}

/// Decodes and checks a quarantine file.
pub fn decode(bytes: &[u8]) -> Result<Quarantined, DecodeError> {
    let mut r = Reader::new(bytes);
    let magic = r.take(8)?;
    if magic != MAGIC {
        return Err(DecodeError::BadMagic {
            found: magic.to_vec(),
        });
    }
    let version = r.u16()?;
    let reason = r.u16()?;
    r.u32()?;
    let segment_id = r.u64()?;
    let offset = r.u64()?;
    let len = r.u64()?;
    let created_ms = r.u64()?;
    let bytes_crc = r.u32()?;
    r.u64()?;
    let stored = r.u32()?;
    let computed = crc32(bytes.get(..60).unwrap_or_default());
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let reason = match reason {
        1 => Reason::DamagedRecords,
        2 => Reason::TornTail,
        3 => Reason::SegmentHeader,
        other => {
            return Err(DecodeError::Invalid {
                field: "quarantine reason",
                value: u64::from(other),
            });
        }
    };
    let segment_id = u32::try_from(segment_id).map_err(|_| DecodeError::Invalid {
        field: "segment id",
        value: segment_id,
    })?;
    if len != r.remaining() as u64 {
        return Err(DecodeError::Invalid {
            field: "quarantined length",
            value: len,
        });
    }
    let saved = r.take(r.remaining())?;
    let computed = crc32(saved);
    if computed != bytes_crc {
        return Err(DecodeError::Checksum {
            stored: bytes_crc,
            computed,
        });
    }
    Ok(Quarantined {
        reason,
        segment_id,
        offset,
        created_ms,
        bytes: saved.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let q = Quarantined {
            reason: Reason::DamagedRecords,
            segment_id: 7,
            offset: 4096,
            created_ms: 5,
            bytes: b"damaged bytes".to_vec(),
        };
        let enc = encode(&q);
        assert_eq!(enc.len(), HEADER_LEN + q.bytes.len());
        assert_eq!(decode(&enc), Ok(q));
        for i in 0..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 0x20;
            assert!(decode(&bad).is_err(), "flip at {i} not detected");
        }
        assert!(decode(&enc[..enc.len() - 1]).is_err());
        let name = file_name(7, 4096, 5);
        assert!(is_file_name(&name));
        assert_eq!(crate::format::file_name::parse_segment(&name), None);
    }
}
