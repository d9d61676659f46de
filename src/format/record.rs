//! Log records: the frames appended to segments.
//!
//! # Format (all integers little-endian)
//! ```text
//! offset size field
//!  0      4   hcrc     CRC-32 (IEEE) of header bytes 4 .. 32 (everything below, pcrc included)
//!  4      4   pcrc     CRC-32 (IEEE) of the payload as stored
//!  8      4   len      payload length in bytes
//! 12      1   kind     1 = Put, 2 = Take, 3 = Commit, 4 = Rollback, 5 = PutBatch
//! 13      1   flags    bit 0 = payload compressed, bit 1 = payload encrypted; others reserved (0)
//! 14      2   key_id   id of the encryption key (0 = none)
//! 16      8   seq      sequence number: strictly increasing along each data directory's log
//! 24      8   txn      transaction id
//! 32      len payload  depends on kind (below); when encrypted it starts with a 12-byte nonce
//! ```
//! Payloads:
//! ```text
//! Put:      body_len u32 | body | header_count u32 | (key_len u32 | key | value_len u32 | value)*
//! PutBatch: count u32 | stored form of ((put_len u32 | Put payload) * count)
//! Take:     segment u32 | offset u64             (where the taken record starts; bits 48..64
//!                                                 of offset: the event's index in a PutBatch)
//! Commit:   record_count u32                     (events the transaction put or took)
//! Rollback: record_count u32                     (events put before the rollback)
//! ```
//! A PutBatch holds several events of one put transaction, compressed (and encrypted) as one
//! block; `count` (1 ..= [`MAX_BATCH_EVENTS`]) stays in the clear so that replay can enqueue a
//! pointer per event without keys and without decompressing, and it is bound to the ciphertext
//! as associated data (after the header's). The raw block is at most [`MAX_BATCH_RAW`] bytes.
//! Event `i` of the batch at offset `o` is addressed as offset `o | i << 48` (see
//! [`RecordPtr`]). A plain Put counts as one event in `record_count`, a PutBatch as `count`.
//! The header has its own CRC so that a reader can trust a header without reading the payload:
//! replay checks every header but only the payloads it must (see DESIGN.md §7), and a Put
//! payload is checked against `pcrc` whenever an event is read. Both CRCs are computed when the
//! record is encoded, outside the log's append lock (the header's with `seq` = 0); sealing under
//! the lock writes `seq` and corrects the header CRC for it by eight table lookups (see
//! [`seal`]).
//!
//! A header whose 32 bytes are all zero marks the end of the written part of a version 1 or 2
//! segment (they are preallocated with zeros). A recycled (version 3) segment's records end at
//! its *end marker* instead ([`end_marker`]): a header with `kind` = 6, `len` = 0, `pcrc` = 0,
//! `flags` and `key_id` 0, `seq` = the segment's floor and `txn` = its segment id, under a valid
//! `hcrc`. It is not a record (no record has kind 6, so nothing decodes it as one), and since
//! it names its segment and floor, a marker left by the file's earlier use never matches the
//! current one. Do not reorder fields.
//!
//! `flags` and `key_id` say how a Put payload is stored: compressed ([`FLAG_COMPRESSED`]),
//! encrypted ([`FLAG_ENCRYPTED`], with the key `key_id` names, never 0), both, or neither
//! (src/at_rest/ has the layouts). Take, Commit and Rollback records always have both at 0.
//! An encrypted record's payload is encrypted and its `pcrc` computed when it is sealed (the
//! nonce and the associated data, header bytes 8..32, include `seq`); `pcrc` covers the
//! ciphertext, so every CRC check works without keys.

use std::collections::BTreeMap;

use super::{DecodeError, MAX_COUNTER, Reader, Writer, crc32};
use crate::at_rest::{PayloadCodec, StoredForm};
use crate::event::Event;
use crate::ids::RecordPtr;

/// Size of the fixed record header.
pub const HEADER_LEN: usize = 32;
/// Payload size of a Take record.
pub const TAKE_PAYLOAD_LEN: usize = 12;
/// Payload size of Commit and Rollback records.
pub const MARKER_PAYLOAD_LEN: usize = 4;

/// Record flag: the payload is compressed (src/at_rest/compression.rs has its layout).
pub const FLAG_COMPRESSED: u8 = 1;
/// Record flag: the payload is encrypted with the key `key_id` names (src/at_rest/cipher.rs).
pub const FLAG_ENCRYPTED: u8 = 2;
/// Flags understood by this version.
const KNOWN_FLAGS: u8 = FLAG_COMPRESSED | FLAG_ENCRYPTED;

/// Most events one PutBatch record holds (their index must fit the 16 bits of a pointer).
pub const MAX_BATCH_EVENTS: u32 = 1 << 16;
/// Largest raw (uncompressed, unencrypted) block a PutBatch holds; readers refuse a larger
/// stated size before allocating.
pub const MAX_BATCH_RAW: usize = 1 << 20;
/// Events whose Put payload is larger than this are never batched: they are written as Put
/// records of their own (a batch then never needs more than about [`MAX_BATCH_RAW`] in memory).
pub const MAX_BATCHED_EVENT: usize = 64 << 10;

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// An event put by a transaction.
    Put = 1,
    /// An event taken by a transaction.
    Take = 2,
    /// The transaction committed.
    Commit = 3,
    /// The transaction rolled back.
    Rollback = 4,
    /// Several events put by a transaction, stored as one compressed (and encrypted) block.
    PutBatch = 5,
}

impl Kind {
    /// True for the kinds that hold event data (Put, PutBatch).
    pub fn holds_events(self) -> bool {
        matches!(self, Kind::Put | Kind::PutBatch)
    }

    fn from_u8(v: u8) -> Result<Kind, DecodeError> {
        match v {
            1 => Ok(Kind::Put),
            2 => Ok(Kind::Take),
            3 => Ok(Kind::Commit),
            4 => Ok(Kind::Rollback),
            5 => Ok(Kind::PutBatch),
            _ => Err(DecodeError::Invalid {
                field: "record kind",
                value: u64::from(v),
            }),
        }
    }
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Stored CRC of the payload.
    pub pcrc: u32,
    /// Payload length.
    pub len: u32,
    /// Record kind.
    pub kind: Kind,
    /// Flags (0 in version 1).
    pub flags: u8,
    /// Encryption key id (0 in version 1).
    pub key_id: u16,
    /// Sequence number.
    pub seq: u64,
    /// Transaction id.
    pub txn: u64,
}

impl RecordHeader {
    /// Whole record length: header plus payload.
    pub fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.len)
    }
}

/// True when the header bytes are all zero: the end of the written part of a segment. (Replay
/// asks this once per record: a whole header is compared a word at a time.)
#[inline]
pub fn is_end_marker(header: &[u8]) -> bool {
    match header.first_chunk::<HEADER_LEN>() {
        Some(hb) if header.len() == HEADER_LEN => {
            let word = |i: usize| {
                u64::from_le_bytes([
                    hb[i],
                    hb[i + 1],
                    hb[i + 2],
                    hb[i + 3],
                    hb[i + 4],
                    hb[i + 5],
                    hb[i + 6],
                    hb[i + 7],
                ])
            };
            word(0) | word(8) | word(16) | word(24) == 0
        }
        _ => header.iter().all(|b| *b == 0),
    }
}

/// The `kind` byte of a recycled segment's end marker (never a record's kind).
pub const END_KIND: u8 = 6;

/// The `kind` byte of a kept (free) segment file's stamp: like an end marker, with this kind
/// (never a record's, never an end marker's), so that a file renamed for reuse whose stamp a
/// crash lost is never taken for a stamped one because it holds a recycled segment's own
/// header and end marker.
pub const FREE_STAMP_KIND: u8 = 7;

/// The end marker of the recycled segment `segment_id` whose records have sequence numbers
/// above `floor` (see the module docs): written after the records of every append to it.
pub fn end_marker(segment_id: u32, floor: u64) -> [u8; HEADER_LEN] {
    marker(END_KIND, segment_id, floor)
}

/// The mark after the header of a kept segment file's stamp (DESIGN.md §4.6): as
/// [`end_marker`], with kind [`FREE_STAMP_KIND`].
pub fn free_stamp_marker(segment_id: u32, floor: u64) -> [u8; HEADER_LEN] {
    marker(FREE_STAMP_KIND, segment_id, floor)
}

fn marker(kind: u8, segment_id: u32, floor: u64) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[12] = kind;
    b[16..24].copy_from_slice(&floor.to_le_bytes());
    b[24..32].copy_from_slice(&u64::from(segment_id).to_le_bytes());
    let crc = crc32(&b[4..]);
    b[0..4].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The segment id and floor an end marker names, if `hb` is exactly one ([`end_marker`]).
pub fn decode_end_marker(hb: &[u8]) -> Option<(u32, u64)> {
    let b = hb.first_chunk::<HEADER_LEN>()?;
    if b[12] != END_KIND {
        return None;
    }
    let floor = u64::from_le_bytes(b[16..24].try_into().ok()?);
    let id = u32::try_from(u64::from_le_bytes(b[24..32].try_into().ok()?)).ok()?;
    (end_marker(id, floor) == *b).then_some((id, floor))
}

/// Decodes a header and checks its CRC (the payload is not read: see [`verify`]).
pub fn decode_header(bytes: &[u8]) -> Result<RecordHeader, DecodeError> {
    // Fixed offsets in a 32-byte array (replay decodes one header per record: no per-field
    // length checks).
    let Some(b) = bytes.first_chunk::<HEADER_LEN>() else {
        return Err(DecodeError::Truncated {
            needed: if bytes.len() < 4 {
                4
            } else {
                HEADER_LEN as u64
            },
            available: bytes.len() as u64,
        });
    };
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let u64_at = |i: usize| u64::from(u32_at(i)) | (u64::from(u32_at(i + 4)) << 32);
    let hcrc = u32_at(0);
    let computed = crc32(&b[4..]);
    if computed != hcrc {
        return Err(DecodeError::Checksum {
            stored: hcrc,
            computed,
        });
    }
    let pcrc = u32_at(4);
    let len = u32_at(8);
    let kind = Kind::from_u8(b[12])?;
    let flags = b[13];
    let key_id = u16::from_le_bytes([b[14], b[15]]);
    let seq = u64_at(16);
    let txn = u64_at(24);
    if seq > MAX_COUNTER {
        return Err(DecodeError::Invalid {
            field: "record sequence number",
            value: seq,
        });
    }
    if txn > MAX_COUNTER {
        return Err(DecodeError::Invalid {
            field: "record transaction id",
            value: txn,
        });
    }
    if flags & !KNOWN_FLAGS != 0 {
        return Err(DecodeError::Invalid {
            field: "record flags",
            value: u64::from(flags),
        });
    }
    if flags != 0 && !kind.holds_events() {
        return Err(DecodeError::Invalid {
            field: "record flags (only Put payloads are compressed or encrypted)",
            value: u64::from(flags),
        });
    }
    if (key_id != 0) != (flags & FLAG_ENCRYPTED != 0) {
        return Err(DecodeError::Invalid {
            field: "record key id (set exactly when the payload is encrypted)",
            value: u64::from(key_id),
        });
    }
    let fixed = match kind {
        Kind::Take => Some(TAKE_PAYLOAD_LEN),
        Kind::Commit | Kind::Rollback => Some(MARKER_PAYLOAD_LEN),
        Kind::Put => None,
        Kind::PutBatch => {
            if (len as usize) < BATCH_COUNT_LEN {
                return Err(DecodeError::Invalid {
                    field: "record length (a PutBatch holds at least its count)",
                    value: u64::from(len),
                });
            }
            None
        }
    };
    match fixed {
        Some(n) if len as usize != n => {
            return Err(DecodeError::Invalid {
                field: "record length",
                value: u64::from(len),
            });
        }
        _ => {}
    }
    Ok(RecordHeader {
        pcrc,
        len,
        kind,
        flags,
        key_id,
        seq,
        txn,
    })
}

/// Checks the payload CRC of a whole record (`record` = header followed by exactly `len`
/// payload bytes) whose header [`decode_header`] already checked.
pub fn verify(header: &RecordHeader, record: &[u8]) -> Result<(), DecodeError> {
    let expected = header.record_len();
    if record.len() as u64 != expected {
        return Err(DecodeError::Truncated {
            needed: expected,
            available: record.len() as u64,
        });
    }
    let computed = crc32(&record[HEADER_LEN..]);
    if computed != header.pcrc {
        return Err(DecodeError::Checksum {
            stored: header.pcrc,
            computed,
        });
    }
    Ok(())
}

/// Decodes and checks (both CRCs) one whole record at the start of `bytes`; returns its header
/// and payload.
pub fn decode(bytes: &[u8]) -> Result<(RecordHeader, &[u8]), DecodeError> {
    let header_bytes = bytes.get(..HEADER_LEN).ok_or(DecodeError::Truncated {
        needed: HEADER_LEN as u64,
        available: bytes.len() as u64,
    })?;
    let header = decode_header(header_bytes)?;
    let end = usize::try_from(header.record_len()).unwrap_or(usize::MAX);
    let record = bytes.get(..end).ok_or(DecodeError::Truncated {
        needed: header.record_len(),
        available: bytes.len() as u64,
    })?;
    verify(&header, record)?;
    Ok((header, &record[HEADER_LEN..]))
}

/// Size of a Put record's payload for `event`.
pub fn put_payload_len(event: &Event) -> u64 {
    let headers: u64 = event
        .headers()
        .iter()
        .map(|(k, v)| 8 + k.len() as u64 + v.len() as u64)
        .sum();
    4 + event.body().len() as u64 + 4 + headers
}

/// Appends a record header with `len`, `kind` and `txn` set; `pcrc` is set by [`finish`],
/// `seq` and `hcrc` by [`seal`]. Returns where the record starts.
fn begin(buf: &mut Vec<u8>, kind: Kind, txn: u64, len: u32) -> usize {
    let start = buf.len();
    // hcrc (set by seal), pcrc (set by finish), flags, key id and seq (set by seal) start at 0.
    let mut h = [0u8; HEADER_LEN];
    h[8..12].copy_from_slice(&len.to_le_bytes());
    h[KIND_BYTE] = kind as u8;
    h[24..32].copy_from_slice(&txn.to_le_bytes());
    buf.extend_from_slice(&h);
    start
}

/// Completes a record whose payload `codec` stored in form `form` (compressed and/or encrypted):
/// writes its length, flags and key id, then its CRCs, unless it is encrypted, in which case
/// [`seal_with`] encrypts and hashes it once its sequence number is known.
fn close_transformed(buf: &mut [u8], start: usize, form: StoredForm) -> Unsealed {
    let len = (buf.len() - start - HEADER_LEN) as u32;
    buf[start + 8..start + 12].copy_from_slice(&len.to_le_bytes());
    buf[start + 13] = form.flags;
    buf[start + 14..start + 16].copy_from_slice(&form.key_id.to_le_bytes());
    if form.flags & FLAG_ENCRYPTED == 0 {
        return finish(buf, start);
    }
    Unsealed {
        start,
        end: buf.len(),
    }
}

/// Computes the payload CRC of the record that starts at `start` and runs to the end of `buf`,
/// then its header CRC (with `seq` still 0): [`seal`] only has to correct it for `seq`.
#[inline(always)]
fn finish(buf: &mut [u8], start: usize) -> Unsealed {
    let end = buf.len();
    let pcrc = crc32(&buf[start + HEADER_LEN..end]);
    buf[start + 4..start + 8].copy_from_slice(&pcrc.to_le_bytes());
    let hcrc = crc32(&buf[start + 4..start + HEADER_LEN]);
    buf[start..start + 4].copy_from_slice(&hcrc.to_le_bytes());
    Unsealed { start, end }
}

/// The header CRC of the last header hashed through it, without its `pcrc` (as if `pcrc` were
/// 0), keyed by the header bytes after `pcrc` (`len`, `kind`, `flags`, `key_id`, `seq`, `txn`).
/// The Put records of one transaction mostly share those bytes (same `txn`, `seq` still 0, and
/// often the same length): their header CRCs then cost four table lookups for `pcrc`, since
/// CRC-32 is affine (see `SEQ_CRC`).
#[derive(Debug, Clone, Default)]
pub(crate) struct HeaderCrcCache {
    key: [u8; HEADER_LEN - 8],
    /// `None` until the first header.
    crc: Option<u32>,
}

impl HeaderCrcCache {
    /// The CRC of header bytes 4..32 of `h`, equal to `crc32(&h[4..])`.
    #[inline]
    fn header_crc(&mut self, h: &[u8; HEADER_LEN]) -> u32 {
        let mut pcrc = [0u8; 4];
        pcrc.copy_from_slice(&h[4..8]);
        let rest = &h[8..];
        let base = match self.crc {
            Some(crc) if self.key[..] == *rest => crc,
            _ => {
                let mut zeroed = [0u8; HEADER_LEN - 4];
                zeroed[4..].copy_from_slice(rest);
                let crc = crc32(&zeroed);
                self.key.copy_from_slice(rest);
                self.crc = Some(crc);
                crc
            }
        };
        base ^ PCRC_CRC[0][pcrc[0] as usize]
            ^ PCRC_CRC[1][pcrc[1] as usize]
            ^ PCRC_CRC[2][pcrc[2] as usize]
            ^ PCRC_CRC[3][pcrc[3] as usize]
    }
}

/// [`finish`] with the header CRC through `cache`.
#[inline(always)]
fn finish_cached(buf: &mut [u8], start: usize, cache: &mut HeaderCrcCache) -> Unsealed {
    let end = buf.len();
    let pcrc = crc32(&buf[start + HEADER_LEN..end]);
    if let Some(h) = buf[start..].first_chunk_mut::<HEADER_LEN>() {
        h[4..8].copy_from_slice(&pcrc.to_le_bytes());
        let hcrc = cache.header_crc(h);
        h[..4].copy_from_slice(&hcrc.to_le_bytes());
    }
    Unsealed { start, end }
}

/// `SEQ_CRC[k][b]`: what byte `b` at byte `k` of a header's `seq` field contributes to its CRC
/// (the CRC register run from 0 over that byte and the `15 - k` header bytes after it, with no
/// final inversion). CRC-32 is affine: changing header bytes by `d` (XOR) changes the CRC by
/// `d`'s contributions, whatever the other bytes hold. So [`seal`] turns a header's CRC for one
/// `seq` into its CRC for another by eight lookups.
static SEQ_CRC: [[u32; 256]; 8] = crc_tables::<8>(8);

/// `PCRC_CRC[k][b]`: the same for byte `k` of `pcrc` (24 + 3 - k header bytes after it).
static PCRC_CRC: [[u32; 256]; 4] = crc_tables::<4>(HEADER_LEN - 8);

/// The CRC-32 register (reflected, polynomial 0xEDB88320) shifted over 8 zero bits.
const fn crc_step8(mut crc: u32) -> u32 {
    let mut i = 0;
    while i < 8 {
        crc = if crc & 1 != 0 {
            (crc >> 1) ^ 0xEDB8_8320
        } else {
            crc >> 1
        };
        i += 1;
    }
    crc
}

/// `t[k][b]`: the CRC register run from 0 over byte `b` at byte `k` of an `N`-byte field that
/// `after` zero bytes follow (so `N - 1 - k + after` zero bytes after `b`).
const fn crc_tables<const N: usize>(after: usize) -> [[u32; 256]; N] {
    let mut t = [[0u32; 256]; N];
    let mut b = 0;
    while b < 256 {
        // Byte b as the field's last byte, then `after` zero bytes; each byte further from the
        // end is one more zero byte to run over.
        let mut crc = crc_step8(b as u32);
        let mut n = 0;
        while n < after {
            crc = crc_step8(crc);
            n += 1;
        }
        let mut k = N;
        while k > 0 {
            k -= 1;
            t[k][b] = crc;
            crc = crc_step8(crc);
        }
        b += 1;
    }
    t
}

/// What changing a header's `seq` by `diff` (XOR) changes its CRC by.
#[inline]
fn seq_crc(diff: u64) -> u32 {
    let b = diff.to_le_bytes();
    SEQ_CRC[0][b[0] as usize]
        ^ SEQ_CRC[1][b[1] as usize]
        ^ SEQ_CRC[2][b[2] as usize]
        ^ SEQ_CRC[3][b[3] as usize]
        ^ SEQ_CRC[4][b[4] as usize]
        ^ SEQ_CRC[5][b[5] as usize]
        ^ SEQ_CRC[6][b[6] as usize]
        ^ SEQ_CRC[7][b[7] as usize]
}

/// An encoded record waiting in a buffer for its sequence number and CRC.
#[derive(Debug, Clone, Copy)]
pub struct Unsealed {
    /// Offset of the record in the buffer.
    pub start: usize,
    /// Offset just past its end.
    pub end: usize,
}

/// Appends the plain Put payload of `event` (the layout in the module docs).
fn write_put_payload(buf: &mut Vec<u8>, event: &Event) {
    let mut w = Writer::new(buf);
    w.u32(event.body().len() as u32);
    w.bytes(event.body());
    w.u32(event.headers().len() as u32);
    for (k, v) in event.headers() {
        w.u32(k.len() as u32);
        w.bytes(k.as_bytes());
        w.u32(v.len() as u32);
        w.bytes(v.as_bytes());
    }
}

/// Appends an unsealed Put record for `event`, stored plain. The caller has checked the size
/// fits `u32`.
pub fn encode_put(buf: &mut Vec<u8>, txn: u64, event: &Event) -> Unsealed {
    let len = put_payload_len(event);
    encode_put_sized(buf, txn, event, len, &mut HeaderCrcCache::default())
}

/// [`encode_put`] for a caller that has `len`, the event's [`put_payload_len`], at hand, and
/// keeps a [`HeaderCrcCache`] across the records of a transaction.
#[inline]
pub(crate) fn encode_put_sized(
    buf: &mut Vec<u8>,
    txn: u64,
    event: &Event,
    len: u64,
    cache: &mut HeaderCrcCache,
) -> Unsealed {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    buf.reserve(HEADER_LEN + len as usize);
    let start = buf.len();
    // The header (as `begin` writes it) and `body_len` in one copy, then the body, then the
    // headers as `write_put_payload` writes them.
    let mut h = [0u8; HEADER_LEN + 4];
    h[8..12].copy_from_slice(&len.to_le_bytes());
    h[KIND_BYTE] = Kind::Put as u8;
    h[24..32].copy_from_slice(&txn.to_le_bytes());
    h[HEADER_LEN..].copy_from_slice(&(event.body().len() as u32).to_le_bytes());
    buf.extend_from_slice(&h);
    buf.extend_from_slice(event.body());
    buf.extend_from_slice(&(event.headers().len() as u32).to_le_bytes());
    for (k, v) in event.headers() {
        buf.extend_from_slice(&(k.len() as u32).to_le_bytes());
        buf.extend_from_slice(k.as_bytes());
        buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
        buf.extend_from_slice(v.as_bytes());
    }
    finish_cached(buf, start, cache)
}

/// Appends an unsealed Put record for `event` in the stored form `codec` chooses (compressed
/// and/or with room for encryption; `scratch` is reused between calls). An encrypted record's
/// payload is encrypted and its payload CRC computed by [`seal_with`], which knows `seq`.
pub fn encode_put_with(
    buf: &mut Vec<u8>,
    txn: u64,
    event: &Event,
    codec: &PayloadCodec,
    scratch: &mut Vec<u8>,
) -> Unsealed {
    if codec.is_identity() {
        return encode_put(buf, txn, event);
    }
    let start = begin(buf, Kind::Put, txn, 0);
    let plain_len = usize::try_from(put_payload_len(event)).unwrap_or(usize::MAX);
    let form = codec.write_payload(buf, scratch, plain_len, |b| write_put_payload(b, event));
    close_transformed(buf, start, form)
}

/// Appends an unsealed Take record pointing at `target`.
pub fn encode_take(buf: &mut Vec<u8>, txn: u64, target: RecordPtr) -> Unsealed {
    let start = begin(buf, Kind::Take, txn, TAKE_PAYLOAD_LEN as u32);
    let mut w = Writer::new(buf);
    w.u32(target.segment.0);
    w.u64(target.offset);
    finish(buf, start)
}

/// [`encode_take`] for the Take records of one transaction, which share every header byte but
/// `pcrc`: through `cache`, each header CRC after the first costs four table lookups.
pub(crate) fn encode_take_cached(
    buf: &mut Vec<u8>,
    txn: u64,
    target: RecordPtr,
    cache: &mut HeaderCrcCache,
) -> Unsealed {
    let start = begin(buf, Kind::Take, txn, TAKE_PAYLOAD_LEN as u32);
    let mut w = Writer::new(buf);
    w.u32(target.segment.0);
    w.u64(target.offset);
    finish_cached(buf, start, cache)
}

/// Appends an unsealed Commit or Rollback record.
pub fn encode_marker(buf: &mut Vec<u8>, kind: Kind, txn: u64, record_count: u32) -> Unsealed {
    let start = begin(buf, kind, txn, MARKER_PAYLOAD_LEN as u32);
    Writer::new(buf).u32(record_count);
    finish(buf, start)
}

/// Writes `seq` into a record as its encoder left it (or as an earlier `seal` left it), and
/// corrects the header CRC for it. Done under the log's append lock (the sequence number is
/// only known there), so it hashes nothing: the encoder computed both CRCs outside the lock
/// (the header's with the `seq` the buffer holds), and the header CRC changes with `seq` by
/// eight table lookups (CRC-32 is affine, see `SEQ_CRC`).
#[inline]
pub fn seal(buf: &mut [u8], record: &Unsealed, seq: u64) {
    let s = record.start;
    let h = &mut buf[s..s + HEADER_LEN];
    let mut old = [0u8; 8];
    old.copy_from_slice(&h[16..24]);
    let mut hcrc = [0u8; 4];
    hcrc.copy_from_slice(&h[..4]);
    let hcrc = u32::from_le_bytes(hcrc) ^ seq_crc(u64::from_le_bytes(old) ^ seq);
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    h[..4].copy_from_slice(&hcrc.to_le_bytes());
}

/// Like [`seal`], and first encrypts the payload of a record [`encode_put_with`] marked
/// encrypted (its nonce and associated data include `seq`), then computes its payload CRC over
/// the ciphertext and its header CRC. Records that are not encrypted cost one flag test more
/// than [`seal`]. Fails
/// only if the record names a key `codec` does not hold, before anything is changed.
#[inline(always)]
pub fn seal_with(
    buf: &mut [u8],
    record: &Unsealed,
    seq: u64,
    codec: &PayloadCodec,
) -> crate::error::Result<()> {
    if buf[record.start + 13] & FLAG_ENCRYPTED != 0 {
        return seal_encrypted(buf, record, seq, codec);
    }
    seal(buf, record, seq);
    Ok(())
}

/// [`seal_with`] for an encrypted record (out of line: the plain path is inlined into appends).
#[inline(never)]
fn seal_encrypted(
    buf: &mut [u8],
    record: &Unsealed,
    seq: u64,
    codec: &PayloadCodec,
) -> crate::error::Result<()> {
    let (s, e) = (record.start, record.end);
    let flags = buf[s + 13];
    buf[s + 16..s + 24].copy_from_slice(&seq.to_le_bytes());
    let form = StoredForm {
        flags,
        key_id: u16::from_le_bytes([buf[s + 14], buf[s + 15]]),
    };
    let (header, payload) = buf[s..e].split_at_mut(HEADER_LEN);
    if header[KIND_BYTE] == Kind::PutBatch as u8 {
        // The clear count is bound as associated data after the header's.
        let (count, sealed) = payload.split_at_mut(BATCH_COUNT_LEN);
        let mut aad = [0u8; BATCH_AAD_LEN];
        aad[..HEADER_LEN - 8].copy_from_slice(&header[AAD_RANGE]);
        aad[HEADER_LEN - 8..].copy_from_slice(count);
        codec.seal(form, seq, &aad, sealed)?;
    } else {
        codec.seal(form, seq, &header[AAD_RANGE], payload)?;
    }
    let pcrc = crc32(payload);
    header[4..8].copy_from_slice(&pcrc.to_le_bytes());
    // The encoder could not hash this header: its payload CRC is only known now.
    let hcrc = crc32(&header[4..]);
    header[..4].copy_from_slice(&hcrc.to_le_bytes());
    Ok(())
}

/// Offset of the kind byte in a record header.
const KIND_BYTE: usize = 12;
/// Bytes of a PutBatch's clear event count.
pub const BATCH_COUNT_LEN: usize = 4;
/// Associated data of an encrypted PutBatch: the header's, then the count.
const BATCH_AAD_LEN: usize = HEADER_LEN - 8 + BATCH_COUNT_LEN;

/// The header bytes bound to an encrypted payload as AEAD associated data: `len`, `kind`,
/// `flags`, `key_id`, `seq` and `txn` (everything but the two CRCs).
pub const AAD_RANGE: std::ops::Range<usize> = 8..HEADER_LEN;

/// The associated data of a record, rebuilt from its decoded header (equal to the header's
/// bytes [`AAD_RANGE`]).
pub fn associated_data(h: &RecordHeader) -> [u8; HEADER_LEN - 8] {
    let mut out = Vec::with_capacity(HEADER_LEN - 8);
    let mut w = Writer::new(&mut out);
    w.u32(h.len);
    w.u8(h.kind as u8);
    w.u8(h.flags);
    w.u16(h.key_id);
    w.u64(h.seq);
    w.u64(h.txn);
    let mut a = [0u8; HEADER_LEN - 8];
    a.copy_from_slice(&out);
    a
}

/// Decodes the stored payload of a Put record whose CRCs were checked: decrypts it (checking
/// the tag) and decompresses it (to at most `max_len` bytes) as the header's flags say, then
/// decodes the event.
pub fn decode_put_stored(
    h: &RecordHeader,
    stored: &[u8],
    codec: &PayloadCodec,
    max_len: u64,
) -> Result<Event, DecodeError> {
    if h.flags == 0 {
        return decode_put(stored);
    }
    let form = StoredForm {
        flags: h.flags,
        key_id: h.key_id,
    };
    let plain = codec.read_payload(form, &associated_data(h), stored, max_len)?;
    decode_put(&plain)
}

/// Appends one entry of a PutBatch's raw block: the Put payload of `event` after its length.
/// Returns the entry's length (what it adds to the raw block).
pub fn write_batch_entry(raw: &mut Vec<u8>, event: &Event) -> usize {
    let before = raw.len();
    let len = u32::try_from(put_payload_len(event)).unwrap_or(u32::MAX);
    Writer::new(raw).u32(len);
    write_put_payload(raw, event);
    raw.len() - before
}

/// Appends an unsealed Put record whose plain payload is `payload` (an entry of a raw batch
/// block, without its length), stored in the form `codec` chooses, like [`encode_put_with`]
/// (compressed only if `compress` also says so).
pub fn encode_put_payload_with(
    buf: &mut Vec<u8>,
    txn: u64,
    payload: &[u8],
    codec: &PayloadCodec,
    scratch: &mut Vec<u8>,
    compress: bool,
) -> Unsealed {
    let start = begin(buf, Kind::Put, txn, 0);
    let form = codec.write_payload_opt(buf, scratch, payload.len(), compress, |b| {
        b.extend_from_slice(payload)
    });
    close_transformed(buf, start, form)
}

/// Appends an unsealed PutBatch record holding the `count` entries of `raw` (each written by
/// [`write_batch_entry`]), compressed by `codec` and, if it encrypts, with room for the nonce
/// and tag ([`seal_with`] encrypts it). Returns `None`, leaving `buf` as it was, when `codec`
/// does not compress or compression would not save
/// [`MIN_SAVING_PERCENT`](crate::at_rest::MIN_SAVING_PERCENT) of `raw`: the caller then writes
/// Put records. The caller
/// keeps `count` within 1 ..= [`MAX_BATCH_EVENTS`] and `raw` within [`MAX_BATCH_RAW`].
pub fn encode_put_batch(
    buf: &mut Vec<u8>,
    txn: u64,
    count: u32,
    raw: &[u8],
    codec: &PayloadCodec,
) -> Option<Unsealed> {
    let start = begin(buf, Kind::PutBatch, txn, 0);
    Writer::new(buf).u32(count);
    let Some(form) = codec.write_batch_payload(buf, raw, count) else {
        buf.truncate(start);
        return None;
    };
    Some(close_transformed(buf, start, form))
}

/// The clear event count at the start of a PutBatch payload, checked against
/// 1 ..= [`MAX_BATCH_EVENTS`].
pub fn batch_count(payload: &[u8]) -> Result<u32, DecodeError> {
    let count = Reader::new(payload).u32()?;
    if count == 0 || count > MAX_BATCH_EVENTS {
        return Err(DecodeError::Invalid {
            field: "PutBatch event count",
            value: u64::from(count),
        });
    }
    Ok(count)
}

/// The share of a PutBatch's stored payload length `len` that its event `index` (of `count`)
/// counts against `capacity_bytes`: `len / count`, plus one for the first `len % count` events,
/// so the shares add up to `len`. Replay computes it from the header and the count alone.
pub fn batch_share(len: u32, count: u32, index: u16) -> u32 {
    let count = count.max(1);
    len / count + u32::from(u32::from(index) < len % count)
}

/// A decoded PutBatch: its raw block and where each event's Put payload lies in it.
#[derive(Debug, Clone)]
pub struct DecodedBatch {
    raw: Vec<u8>,
    entries: Vec<(u32, u32)>,
    stored_len: u32,
}

impl DecodedBatch {
    /// Events in the batch.
    pub fn count(&self) -> u32 {
        self.entries.len() as u32
    }
    /// Bytes held in memory (for cache bounds).
    pub fn memory(&self) -> usize {
        self.raw.len() + self.entries.len() * 8
    }
    /// Decodes event `index`.
    pub fn event(&self, index: u16) -> Result<Event, DecodeError> {
        let (s, e) = self
            .entries
            .get(usize::from(index))
            .copied()
            .ok_or(DecodeError::Invalid {
                field: "event index (past the PutBatch's count)",
                value: u64::from(index),
            })?;
        decode_put(&self.raw[s as usize..e as usize])
    }
    /// What event `index` counts against `capacity_bytes` ([`batch_share`]).
    pub fn share(&self, index: u16) -> u32 {
        batch_share(self.stored_len, self.count(), index)
    }
}

/// Decodes the stored payload of a PutBatch record whose CRCs were checked: checks the count,
/// decrypts (checking the tag, which binds the header and the count) and decompresses (to at
/// most [`MAX_BATCH_RAW`] bytes), then splits the block into its `count` entries (no more, no
/// fewer, no trailing bytes). Events are decoded one by one with [`DecodedBatch::event`].
pub fn decode_batch_stored(
    h: &RecordHeader,
    stored: &[u8],
    codec: &PayloadCodec,
) -> Result<DecodedBatch, DecodeError> {
    let count = batch_count(stored)?;
    let body = &stored[BATCH_COUNT_LEN..];
    let form = StoredForm {
        flags: h.flags,
        key_id: h.key_id,
    };
    let mut aad = [0u8; BATCH_AAD_LEN];
    aad[..HEADER_LEN - 8].copy_from_slice(&associated_data(h));
    aad[HEADER_LEN - 8..].copy_from_slice(&count.to_le_bytes());
    let plain = codec.read_payload(form, &aad, body, MAX_BATCH_RAW as u64)?;
    if plain.len() > MAX_BATCH_RAW {
        return Err(DecodeError::Invalid {
            field: "PutBatch raw length (above the format's bound)",
            value: plain.len() as u64,
        });
    }
    let raw = plain.into_owned();
    if count as usize > raw.len() / 4 {
        return Err(DecodeError::Invalid {
            field: "PutBatch event count (more than its block holds)",
            value: u64::from(count),
        });
    }
    let mut entries = Vec::with_capacity(count as usize);
    {
        let mut r = Reader::new(&raw);
        let short = |_| DecodeError::Invalid {
            field: "PutBatch entries (fewer than its count)",
            value: u64::from(count),
        };
        for _ in 0..count {
            let n = r.u32().map_err(short)? as usize;
            let start = r.position();
            r.take(n).map_err(short)?;
            entries.push((start as u32, (start + n) as u32));
        }
        if r.remaining() != 0 {
            return Err(DecodeError::Invalid {
                field: "PutBatch trailing bytes",
                value: r.remaining() as u64,
            });
        }
    }
    Ok(DecodedBatch {
        raw,
        entries,
        stored_len: h.len,
    })
}

/// Recomputes both CRCs of the record at the start of `bytes` from its stored fields, without
/// validating them. For tools and tests that forge or patch records on purpose (a patched field
/// with valid CRCs). Returns the record's length, or `None` when `bytes` does not hold it.
pub fn reseal(bytes: &mut [u8]) -> Option<usize> {
    let len_bytes: [u8; 4] = bytes.get(8..12)?.try_into().ok()?;
    let end = HEADER_LEN.checked_add(u32::from_le_bytes(len_bytes) as usize)?;
    let record = bytes.get_mut(..end)?;
    let pcrc = crc32(&record[HEADER_LEN..]);
    record[4..8].copy_from_slice(&pcrc.to_le_bytes());
    let hcrc = crc32(&record[4..HEADER_LEN]);
    record[..4].copy_from_slice(&hcrc.to_le_bytes());
    Some(end)
}

/// Decodes a Put payload into an event. The body is copied once, straight into the event.
pub fn decode_put(payload: &[u8]) -> Result<Event, DecodeError> {
    let (body, headers) = {
        let mut r = Reader::new(payload);
        let body_len = r.u32()? as usize;
        let body = r.take(body_len)?;
        let n = r.count("header count", 8)?;
        let mut headers = BTreeMap::new();
        for _ in 0..n {
            let kl = r.u32()? as usize;
            let k = std::str::from_utf8(r.take(kl)?).map_err(|_| DecodeError::Utf8 {
                field: "header key",
            })?;
            let vl = r.u32()? as usize;
            let v = std::str::from_utf8(r.take(vl)?).map_err(|_| DecodeError::Utf8 {
                field: "header value",
            })?;
            headers.insert(k.to_owned(), v.to_owned());
        }
        if r.remaining() != 0 {
            return Err(DecodeError::Invalid {
                field: "put payload trailing bytes",
                value: r.remaining() as u64,
            });
        }
        (body, headers)
    };
    Ok(Event::from_parts(headers, body.to_vec()))
}

/// Decodes a Take payload.
pub fn decode_take(payload: &[u8]) -> Result<RecordPtr, DecodeError> {
    let mut r = Reader::new(payload);
    let segment = r.u32()?;
    let offset = r.u64()?;
    Ok(RecordPtr::new(segment, offset))
}

/// Decodes a Commit or Rollback payload (its record count).
pub fn decode_marker(payload: &[u8]) -> Result<u32, DecodeError> {
    Reader::new(payload).u32()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(buf: &mut [u8], u: Unsealed, seq: u64) {
        seal(buf, &u, seq);
    }

    #[test]
    fn cached_header_crcs_equal_hashing_the_header() {
        let mut cache = HeaderCrcCache::default();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..3000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut h = [0u8; HEADER_LEN];
            h[4..8].copy_from_slice(&(x as u32).to_le_bytes());
            // A few distinct tails, so the cache both hits and misses.
            h[8..12].copy_from_slice(&((round % 3) as u32 * 100 + 500).to_le_bytes());
            h[KIND_BYTE] = 1;
            h[24..32].copy_from_slice(&(round / 7 + (x >> 40)).to_le_bytes());
            assert_eq!(cache.header_crc(&h), crc32(&h[4..]), "{h:?}");
        }
        // Records encoded through one cache are the bytes encode_put makes alone.
        let mut cache = HeaderCrcCache::default();
        for (i, n) in [512usize, 512, 3, 512, 0, 0, 70_000]
            .into_iter()
            .enumerate()
        {
            let ev = Event::new(vec![i as u8; n]);
            let txn = 1 + i as u64 / 3;
            let (mut a, mut b) = (vec![1u8; i], vec![1u8; i]);
            let ua = encode_put(&mut a, txn, &ev);
            let ub = encode_put_sized(&mut b, txn, &ev, put_payload_len(&ev), &mut cache);
            assert_eq!((a, ua.start, ua.end), (b, ub.start, ub.end));
        }
        // Take records through one cache (a take transaction's), then a new transaction's.
        let mut cache = HeaderCrcCache::default();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (i, txn) in [(0u64, 5u64), (1, 5), (2, 5), (3, 6), (4, 6)] {
            let target = RecordPtr::new(3 + i as u32, 64 + 100 * i);
            let ua = encode_take(&mut a, txn, target);
            let ub = encode_take_cached(&mut b, txn, target, &mut cache);
            assert_eq!((ua.start, ua.end), (ub.start, ub.end));
        }
        assert_eq!(a, b);
    }

    #[test]
    fn seal_corrects_the_header_crc_for_any_seq_and_reseals() {
        let ev = Event::new(vec![5u8; 300]).with_header("h", "v");
        let seqs = [
            0,
            1,
            255,
            256,
            0x0123_4567_89ab_cdef & MAX_COUNTER,
            MAX_COUNTER,
            1 << 40,
        ];
        for txn in [0, 7, MAX_COUNTER] {
            let mut buf = vec![9u8; 3];
            let u = encode_put(&mut buf, txn, &ev);
            // Encoded, the record is already valid with seq 0.
            assert_eq!(decode(&buf[u.start..]).expect("unsealed").0.seq, 0);
            for seq in seqs {
                // Sealed again with another seq: the header CRC follows.
                seal(&mut buf, &u, seq);
                let (h, _) = decode(&buf[u.start..]).expect("sealed");
                assert_eq!((h.seq, h.txn), (seq, txn));
                let mut full = buf[u.start..u.end].to_vec();
                reseal(&mut full);
                assert_eq!(
                    full,
                    buf[u.start..u.end],
                    "same bytes as hashing the header"
                );
            }
            let mut m = Vec::new();
            let u = encode_marker(&mut m, Kind::Commit, txn, 3);
            seal(&mut m, &u, 77);
            assert_eq!(decode(&m).expect("marker").0.seq, 77);
        }
    }

    /// Review: for random records of every kind and stored form, sealed (and sealed again) with
    /// random sequence numbers, `seal` leaves exactly the bytes that hashing the whole header
    /// (and payload) with crc32fast gives; Puts go through one cache shared across transactions.
    mod seal_matches_hashing {
        use super::*;
        use crate::at_rest::{Compression, Keyring};
        use proptest::prelude::*;
        use std::sync::Arc;

        fn codecs() -> Vec<PayloadCodec> {
            let ring = Arc::new(Keyring::from_bytes(5, [(5, [9u8; 32])]).expect("keyring"));
            vec![
                PayloadCodec::plain(None).expect("plain"),
                PayloadCodec::new(Compression::Lz4, 0, None)
                    .expect("lz4")
                    .with_batching(true),
                PayloadCodec::new(Compression::None, 0, Some(ring.clone()))
                    .expect("enc")
                    .with_batching(true),
                PayloadCodec::new(Compression::Lz4, 0, Some(ring))
                    .expect("lz4+enc")
                    .with_batching(true),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            #[test]
            fn every_record(
                recs in proptest::collection::vec(
                    (0u8..6, 0u64..=MAX_COUNTER, 0usize..400, any::<u8>(), 0usize..4, any::<u32>()),
                    1..12,
                ),
                seqs in proptest::collection::vec(
                    (0u64..=MAX_COUNTER, 0u64..=MAX_COUNTER, any::<bool>()),
                    12,
                ),
            ) {
                let codecs = codecs();
                let mut cache = HeaderCrcCache::default();
                let mut buf = vec![0xEEu8; 5];
                let mut us = Vec::new();
                for (kind, txn, n, fill, c, x) in &recs {
                    let ev = Event::new(vec![*fill; *n]).with_header("k", x.to_string());
                    let codec = &codecs[*c];
                    let u = match kind {
                        0 => encode_put_sized(&mut buf, *txn, &ev, put_payload_len(&ev), &mut cache),
                        1 => encode_put_with(&mut buf, *txn, &ev, codec, &mut Vec::new()),
                        2 => encode_take(&mut buf, *txn, RecordPtr::new(*x, u64::from(*x) << 3)),
                        3 => encode_marker(&mut buf, Kind::Commit, *txn, *x),
                        4 => encode_marker(&mut buf, Kind::Rollback, *txn, *x),
                        _ => {
                            let mut raw = Vec::new();
                            let k = 2 + (*x % 5);
                            for _ in 0..k {
                                write_batch_entry(&mut raw, &ev);
                            }
                            match encode_put_batch(&mut buf, *txn, k, &raw, codec) {
                                Some(u) => u,
                                None => encode_put_with(&mut buf, *txn, &ev, codec, &mut Vec::new()),
                            }
                        }
                    };
                    us.push((u, *c));
                }
                for (i, (u, c)) in us.iter().enumerate() {
                    let (s1, s2, twice) = seqs[i];
                    let codec = &codecs[*c];
                    let encrypted = buf[u.start + 13] & FLAG_ENCRYPTED != 0;
                    seal_with(&mut buf, u, s1, codec).expect("seal");
                    // A plain record sealed again (a failed append retried) follows the new seq;
                    // an encrypted one is never sealed twice (it would be encrypted twice).
                    if twice && !encrypted {
                        seal_with(&mut buf, u, s2, codec).expect("reseal");
                    }
                    let seq = if twice && !encrypted { s2 } else { s1 };
                    let mut hashed = buf[u.start..u.end].to_vec();
                    reseal(&mut hashed);
                    prop_assert_eq!(&hashed[..], &buf[u.start..u.end]);
                    let (h, _) = decode(&buf[u.start..u.end]).expect("decodes");
                    prop_assert_eq!(h.seq, seq);
                }
                prop_assert_eq!(&buf[..5], &[0xEEu8; 5][..]);
            }
        }
    }

    #[test]
    fn put_round_trip() {
        let ev = Event::new(b"hello".to_vec())
            .with_header("host", "a")
            .with_header("k", "");
        let mut buf = Vec::new();
        let u = encode_put(&mut buf, 7, &ev);
        sealed(&mut buf, u, 42);
        let (h, payload) = decode(&buf).expect("decodes");
        assert_eq!((h.kind, h.txn, h.seq), (Kind::Put, 7, 42));
        assert_eq!(u64::from(h.len), put_payload_len(&ev));
        assert_eq!(decode_put(payload).expect("put"), ev);
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let ev = Event::new(b"body".to_vec()).with_header("h", "v");
        let mut buf = Vec::new();
        let u = encode_put(&mut buf, 1, &ev);
        sealed(&mut buf, u, 1);
        for i in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(decode(&bad).is_err(), "flip of bit {i} not detected");
        }
    }

    #[test]
    fn the_header_is_checked_without_the_payload() {
        let ev = Event::new(b"body".to_vec());
        let mut buf = Vec::new();
        let u = encode_put(&mut buf, 1, &ev);
        sealed(&mut buf, u, 9);
        for i in 0..HEADER_LEN * 8 {
            let mut bad = buf.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(
                decode_header(&bad[..HEADER_LEN]).is_err(),
                "header flip of bit {i} not detected"
            );
        }
        // A payload flip passes the header check and fails the payload check.
        let mut bad = buf.clone();
        bad[HEADER_LEN + 5] ^= 1;
        let h = decode_header(&bad[..HEADER_LEN]).expect("header intact");
        assert!(matches!(
            verify(&h, &bad),
            Err(DecodeError::Checksum { .. })
        ));
        // reseal makes a patched record valid again.
        assert_eq!(reseal(&mut bad), Some(buf.len()));
        assert!(decode(&bad).is_ok());
    }

    #[test]
    fn take_and_marker_round_trip() {
        let mut buf = Vec::new();
        let u = encode_take(&mut buf, 3, RecordPtr::new(9, 1 << 40));
        sealed(&mut buf, u, 5);
        let u = encode_marker(&mut buf, Kind::Commit, 3, 1);
        sealed(&mut buf, u, 6);
        let (h, p) = decode(&buf).expect("take");
        assert_eq!(h.kind, Kind::Take);
        assert_eq!(decode_take(p).expect("ptr"), RecordPtr::new(9, 1 << 40));
        let (h2, p2) = decode(&buf[h.record_len() as usize..]).expect("commit");
        assert_eq!((h2.kind, h2.seq), (Kind::Commit, 6));
        assert_eq!(decode_marker(p2).expect("count"), 1);
    }

    #[test]
    fn flags_are_refused_on_records_that_are_never_transformed() {
        let mut buf = Vec::new();
        let u = encode_marker(&mut buf, Kind::Commit, 1, 0);
        sealed(&mut buf, u, 1);
        let mut encrypted = buf.clone();
        encrypted[13] = FLAG_ENCRYPTED;
        encrypted[14] = 1; // a key id
        reseal(&mut encrypted);
        assert!(matches!(
            decode(&encrypted),
            Err(DecodeError::Invalid {
                field: "record flags (only Put payloads are compressed or encrypted)",
                ..
            })
        ));
        let mut unknown = Vec::new();
        let u = encode_put(&mut unknown, 1, &Event::new(b"x".to_vec()));
        sealed(&mut unknown, u, 1);
        unknown[13] = 4;
        reseal(&mut unknown);
        assert!(matches!(
            decode(&unknown),
            Err(DecodeError::Invalid {
                field: "record flags",
                ..
            })
        ));
        // An encrypted Put must name a key, and only an encrypted one may.
        for (flags, key) in [(FLAG_ENCRYPTED, 0u8), (FLAG_COMPRESSED, 3), (0, 3)] {
            let mut bad = unknown.clone();
            bad[13] = flags;
            bad[14] = key;
            reseal(&mut bad);
            assert!(
                matches!(decode(&bad), Err(DecodeError::Invalid { .. })),
                "flags {flags} key {key}"
            );
        }
    }

    #[test]
    fn transformed_puts_round_trip_and_bind_their_header() {
        use crate::at_rest::{Compression, Keyring};
        use std::sync::Arc;
        let ring = Arc::new(Keyring::from_bytes(5, [(5, [9u8; 32])]).expect("keyring"));
        let ev = Event::new(b"hello hello hello hello hello hello hello hello".repeat(8))
            .with_header("host", "a");
        for (compression, keys) in [
            (Compression::Lz4, None),
            (Compression::None, Some(ring.clone())),
            (Compression::Lz4, Some(ring.clone())),
        ] {
            let codec = PayloadCodec::new(compression, 16, keys).expect("codec");
            let mut buf = Vec::new();
            let u = encode_put_with(&mut buf, 7, &ev, &codec, &mut Vec::new());
            seal_with(&mut buf, &u, 42, &codec).expect("seal");
            let (h, stored) = decode(&buf).expect("both CRCs hold");
            assert_ne!(h.flags, 0);
            assert_eq!(&associated_data(&h)[..], &buf[AAD_RANGE]);
            let back = decode_put_stored(&h, stored, &codec, 1 << 20).expect("decodes");
            assert_eq!(back, ev);
            if h.flags & FLAG_ENCRYPTED != 0 {
                assert_eq!(h.key_id, 5);
                // The transaction id is bound to the ciphertext: a resealed change is caught.
                let mut moved = buf.clone();
                moved[24] ^= 1;
                reseal(&mut moved);
                let (h2, stored2) = decode(&moved).expect("CRCs resealed");
                assert!(matches!(
                    decode_put_stored(&h2, stored2, &codec, 1 << 20),
                    Err(DecodeError::Authentication { key_id: 5 })
                ));
                let plain = PayloadCodec::plain(None).expect("codec");
                assert!(matches!(
                    decode_put_stored(&h, stored, &plain, 1 << 20),
                    Err(DecodeError::MissingKey { key_id: 5 })
                ));
            }
        }
    }

    #[test]
    fn put_batches_round_trip_and_bind_header_and_count() {
        use crate::at_rest::{Compression, Keyring};
        use std::sync::Arc;
        let ring = Arc::new(Keyring::from_bytes(5, [(5, [9u8; 32])]).expect("keyring"));
        let events: Vec<Event> = (0..7)
            .map(|i| {
                Event::new(format!("GET /orders/{i} HTTP/1.1 200 512 curl/8.5").into_bytes())
                    .with_header("i", i.to_string())
            })
            .collect();
        let mut raw = Vec::new();
        for e in &events {
            write_batch_entry(&mut raw, e);
        }
        for keys in [None, Some(ring.clone())] {
            let codec = PayloadCodec::new(Compression::Lz4, 0, keys.clone())
                .expect("codec")
                .with_batching(true);
            let mut buf = Vec::new();
            let u = encode_put_batch(&mut buf, 7, 7, &raw, &codec).expect("compresses");
            seal_with(&mut buf, &u, 42, &codec).expect("seal");
            let (h, stored) = decode(&buf).expect("both CRCs hold");
            assert_eq!(h.kind, Kind::PutBatch);
            assert_eq!(batch_count(stored), Ok(7));
            let b = decode_batch_stored(&h, stored, &codec).expect("decodes");
            assert_eq!(b.count(), 7);
            for (i, e) in events.iter().enumerate() {
                assert_eq!(&b.event(i as u16).expect("event"), e);
            }
            assert!(b.event(7).is_err());
            let shares: u32 = (0..7).map(|i| b.share(i)).sum();
            assert_eq!(shares, h.len);
            // Every bit flip of the record is caught by a CRC.
            for bit in 0..buf.len() * 8 {
                let mut bad = buf.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(decode(&bad).is_err(), "flip of bit {bit} not detected");
            }
            // With the CRCs recomputed: a changed count is refused (by the tag when encrypted,
            // by the framing otherwise), and so is a changed transaction id when encrypted.
            let mut count = buf.clone();
            count[HEADER_LEN] = 6;
            reseal(&mut count);
            let (h2, s2) = decode(&count).expect("resealed");
            assert!(decode_batch_stored(&h2, s2, &codec).is_err());
            if keys.is_some() {
                assert!(matches!(
                    decode_batch_stored(&h2, s2, &codec),
                    Err(DecodeError::Authentication { key_id: 5 })
                ));
                let mut txn = buf.clone();
                txn[24] ^= 1;
                reseal(&mut txn);
                let (h3, s3) = decode(&txn).expect("resealed");
                assert!(matches!(
                    decode_batch_stored(&h3, s3, &codec),
                    Err(DecodeError::Authentication { key_id: 5 })
                ));
            }
        }
        // A codec that does not batch (or data that does not compress) writes nothing.
        let plain = PayloadCodec::new(Compression::Lz4, 0, None).expect("codec");
        let mut buf = vec![1u8];
        assert!(encode_put_batch(&mut buf, 1, 7, &raw, &plain).is_none());
        assert_eq!(buf, vec![1u8]);
        // Counts of 0 and above the bound are refused before anything else is read.
        assert!(batch_count(&0u32.to_le_bytes()).is_err());
        assert!(batch_count(&(MAX_BATCH_EVENTS + 1).to_le_bytes()).is_err());
        assert_eq!(
            batch_count(&MAX_BATCH_EVENTS.to_le_bytes()),
            Ok(MAX_BATCH_EVENTS)
        );
    }

    #[test]
    fn zero_header_is_the_end_marker() {
        assert!(is_end_marker(&[0u8; HEADER_LEN]));
        for i in 0..HEADER_LEN {
            let mut h = [0u8; HEADER_LEN];
            h[i] = 0x80;
            assert!(!is_end_marker(&h), "a set bit at byte {i} is not the end");
        }
        assert!(is_end_marker(&[0u8; 7]) && !is_end_marker(&[0, 0, 1]));
        // A recycled segment's end marker: not a zero header, not a record, and it names its
        // segment and floor (a flipped bit anywhere is not a marker).
        let m = end_marker(7, 1234);
        assert!(!is_end_marker(&m));
        assert!(decode_header(&m).is_err());
        assert_eq!(decode_end_marker(&m), Some((7, 1234)));
        assert_ne!(m, end_marker(8, 1234));
        assert_ne!(m, end_marker(7, 1235));
        for i in 0..HEADER_LEN * 8 {
            let mut bad = m;
            bad[i / 8] ^= 1 << (i % 8);
            assert_eq!(decode_end_marker(&bad), None, "bit {i}");
        }
        assert!(matches!(
            decode_header(&[0u8; HEADER_LEN]),
            Err(DecodeError::Checksum { .. })
        ));
    }

    #[test]
    fn lying_header_count_does_not_allocate() {
        let mut payload = Vec::new();
        let mut w = Writer::new(&mut payload);
        w.u32(0);
        w.u32(u32::MAX);
        assert!(matches!(
            decode_put(&payload),
            Err(DecodeError::Invalid {
                field: "header count",
                ..
            })
        ));
    }
}
