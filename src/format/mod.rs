//! The on-disk format: pure encoding and decoding, no I/O. The fuzz targets call this module.
//!
//! DESIGN.md is the normative description; the comments on each encoded type repeat its layout.
//!
//! # Invariants
//! - Every integer on disk is fixed-width little-endian, written by [`Writer`] and read by
//!   [`Reader`]. Nothing here uses a serialization crate, so no crate upgrade can change a byte.
//! - Every record, segment header and checkpoint carries a CRC-32 (IEEE, `crc32fast`) that
//!   covers every other byte of it, so a flipped bit anywhere is detected.
//! - Decoders never panic and never allocate more than a small fixed multiple of the input they
//!   were given (at most one 16-byte pointer per 4 bytes of a checkpoint's queue): every length is
//!   checked against the bytes that remain before anything is read or reserved.
//! - Do not add, remove or reorder fields: a change is a new `FORMAT_VERSION` with a decoder for
//!   the old one.

pub mod checkpoint;
pub mod file_name;
pub mod quarantine;
pub mod record;
pub mod segment_header;

use thiserror::Error;

/// The format version written into every quarantine file and into the header of a segment that
/// holds no PutBatch record. (Checkpoints have their own: [`checkpoint::VERSION`].)
pub const FORMAT_VERSION: u16 = 1;
/// The version in the header of a segment that may hold PutBatch records (a channel with
/// batch compression on writes it into every segment it creates). Version 1 segments are read
/// as before; a binary that predates PutBatch refuses a version 2 segment instead of
/// misreading its records.
pub const BATCH_FORMAT_VERSION: u16 = 2;
/// The version in the header of a recycled segment: a collected segment's file reused without
/// being zeroed. It may hold PutBatch records; its header carries a floor sequence number and
/// its records end at an end marker of its own ([`record::end_marker`]), since the bytes after
/// them are left from the file's earlier use. A binary that predates it refuses such a segment.
pub const RECYCLED_FORMAT_VERSION: u16 = 3;

/// Largest sequence number or transaction id a valid record or checkpoint holds (2^62). The
/// counters restart 2^32 higher at each open, so bounding what is read leaves room for billions
/// of restarts and keeps arithmetic on them from overflowing, whatever the bytes on disk say.
pub const MAX_COUNTER: u64 = 1 << 62;

/// Why bytes could not be decoded. Carries no I/O context: callers add the file and offset.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the structure needs.
    #[error("truncated: needed {needed} bytes, {available} available")]
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// The stored checksum does not match the bytes.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// CRC stored in the bytes.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// The magic number is not the expected one.
    #[error("bad magic {found:02x?}")]
    BadMagic {
        /// What was found.
        found: Vec<u8>,
    },
    /// A format version this build does not read.
    #[error("unsupported format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// Version found.
        found: u16,
        /// Version supported.
        supported: u16,
    },
    /// A field holds a value the format does not allow.
    #[error("invalid {field}: {value}")]
    Invalid {
        /// Field name.
        field: &'static str,
        /// What it held.
        value: u64,
    },
    /// An encrypted payload failed its authentication tag: it was written with another key, or
    /// its header, nonce, ciphertext or tag was changed after it was written.
    #[error(
        "authentication failed for a payload encrypted with key {key_id} (a wrong key, or the record was altered)"
    )]
    Authentication {
        /// The key id the record header names.
        key_id: u16,
    },
    /// An encrypted payload names a key that is not configured.
    #[error("the payload is encrypted with key {key_id}, which is not configured")]
    MissingKey {
        /// The key id the record header names.
        key_id: u16,
    },
    /// Text that is not UTF-8.
    #[error("{field} is not valid UTF-8")]
    Utf8 {
        /// Field name.
        field: &'static str,
    },
}

/// Appends fixed-width little-endian fields to a buffer.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    /// Writes at the end of `buf`.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Writer { buf }
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// Two bytes, little-endian.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Four bytes, little-endian.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Eight bytes, little-endian.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Raw bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
}

/// Reads fixed-width little-endian fields from a slice, never past its end.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads from the start of `bytes`.
    #[inline]
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }
    /// Bytes not read yet.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
    /// Position from the start.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }
    /// The next `n` bytes.
    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                needed: (self.pos as u64).saturating_add(n as u64),
                available: self.bytes.len() as u64,
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }
    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    /// One byte.
    #[inline]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    /// Two bytes, little-endian.
    #[inline]
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    /// Four bytes, little-endian.
    #[inline]
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    /// Eight bytes, little-endian.
    #[inline]
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// A count that is about to size an allocation: it must not promise more items of
    /// `min_item_size` bytes than the bytes that remain.
    pub fn count(
        &mut self,
        field: &'static str,
        min_item_size: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.u64_or_u32_count()?;
        let max = self.remaining() / min_item_size.max(1);
        if n > max as u64 {
            return Err(DecodeError::Invalid { field, value: n });
        }
        Ok(n as usize)
    }
    fn u64_or_u32_count(&mut self) -> Result<u64, DecodeError> {
        self.u32().map(u64::from)
    }
}

/// CRC-32 (IEEE) of `bytes`.
///
/// The hasher that `crc32fast` picks for this CPU is made once and cloned: `crc32fast::hash`
/// runs the CPU feature detection at every call, which costs more than hashing a 28-byte record
/// header (replay checks one per record).
#[inline]
pub fn crc32(bytes: &[u8]) -> u32 {
    static HASHER: std::sync::OnceLock<crc32fast::Hasher> = std::sync::OnceLock::new();
    let mut h = HASHER.get_or_init(crc32fast::Hasher::new).clone();
    h.update(bytes);
    h.finalize()
}
