//! Log records: the frames appended to segments.
//!
//! # Format (all integers little-endian)
//! ```text
//! offset size field
//!  0      4   hcrc     CRC-32 (IEEE) of header bytes 4 .. 32 (everything below, pcrc included)
//!  4      4   pcrc     CRC-32 (IEEE) of the payload as stored
//!  8      4   len      payload length in bytes
//! 12      1   kind     1 = Put, 2 = Take, 3 = Commit, 4 = Rollback
//! 13      1   flags    bit 0 = payload compressed, bit 1 = payload encrypted; others reserved (0)
//! 14      2   key_id   id of the encryption key (0 = none)
//! 16      8   seq      sequence number: strictly increasing along each data directory's log
//! 24      8   txn      transaction id
//! 32      len payload  depends on kind (below); when encrypted it starts with a 12-byte nonce
//! ```
//! Payloads:
//! ```text
//! Put:      body_len u32 | body | header_count u32 | (key_len u32 | key | value_len u32 | value)*
//! Take:     segment u32 | offset u64             (where the taken Put record starts)
//! Commit:   record_count u32                     (Put or Take records the transaction wrote)
//! Rollback: record_count u32                     (Put records written before the rollback)
//! ```
//! The header has its own CRC so that a reader can trust a header without reading the payload:
//! replay checks every header but only the payloads it must (see DESIGN.md §7), and a Put
//! payload is checked against `pcrc` whenever an event is read. The payload CRC is computed when
//! the record is encoded, outside the log's append lock; sealing under the lock only writes
//! `seq` and hashes the 28 header bytes.
//!
//! A header whose 32 bytes are all zero marks the end of the written part of a segment
//! (segments are preallocated with zeros). Do not reorder fields.
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
}

impl Kind {
    fn from_u8(v: u8) -> Result<Kind, DecodeError> {
        match v {
            1 => Ok(Kind::Put),
            2 => Ok(Kind::Take),
            3 => Ok(Kind::Commit),
            4 => Ok(Kind::Rollback),
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

/// True when the header bytes are all zero: the end of the written part of a segment.
pub fn is_end_marker(header: &[u8]) -> bool {
    header.iter().all(|b| *b == 0)
}

/// Decodes a header and checks its CRC (the payload is not read: see [`verify`]).
pub fn decode_header(bytes: &[u8]) -> Result<RecordHeader, DecodeError> {
    let mut r = Reader::new(bytes);
    let hcrc = r.u32()?;
    let rest = bytes.get(4..HEADER_LEN).ok_or(DecodeError::Truncated {
        needed: HEADER_LEN as u64,
        available: bytes.len() as u64,
    })?;
    let computed = crc32(rest);
    if computed != hcrc {
        return Err(DecodeError::Checksum {
            stored: hcrc,
            computed,
        });
    }
    let pcrc = r.u32()?;
    let len = r.u32()?;
    let kind = Kind::from_u8(r.u8()?)?;
    let flags = r.u8()?;
    let key_id = r.u16()?;
    let seq = r.u64()?;
    let txn = r.u64()?;
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
    if flags != 0 && kind != Kind::Put {
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
    let mut w = Writer::new(buf);
    w.u32(0); // hcrc, set by seal
    w.u32(0); // pcrc, set by finish
    w.u32(len);
    w.u8(kind as u8);
    w.u8(0); // flags
    w.u16(0); // key id
    w.u64(0); // seq, set by seal
    w.u64(txn);
    start
}

/// Computes the payload CRC of the record that starts at `start` and runs to the end of `buf`.
fn finish(buf: &mut [u8], start: usize) -> Unsealed {
    let end = buf.len();
    let pcrc = crc32(&buf[start + HEADER_LEN..end]);
    buf[start + 4..start + 8].copy_from_slice(&pcrc.to_le_bytes());
    Unsealed { start, end }
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
    let len = u32::try_from(put_payload_len(event)).unwrap_or(u32::MAX);
    let start = begin(buf, Kind::Put, txn, len);
    write_put_payload(buf, event);
    finish(buf, start)
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

/// Appends an unsealed Take record pointing at `target`.
pub fn encode_take(buf: &mut Vec<u8>, txn: u64, target: RecordPtr) -> Unsealed {
    let start = begin(buf, Kind::Take, txn, TAKE_PAYLOAD_LEN as u32);
    let mut w = Writer::new(buf);
    w.u32(target.segment.0);
    w.u64(target.offset);
    finish(buf, start)
}

/// Appends an unsealed Commit or Rollback record.
pub fn encode_marker(buf: &mut Vec<u8>, kind: Kind, txn: u64, record_count: u32) -> Unsealed {
    let start = begin(buf, kind, txn, MARKER_PAYLOAD_LEN as u32);
    Writer::new(buf).u32(record_count);
    finish(buf, start)
}

/// Writes `seq` and the header CRC into an unsealed record. Done under the log's append lock
/// (the sequence number is only known there), so it hashes only the 28 header bytes: the
/// payload CRC was computed by the encoder, outside the lock.
pub fn seal(buf: &mut [u8], record: &Unsealed, seq: u64) {
    let s = record.start;
    buf[s + 16..s + 24].copy_from_slice(&seq.to_le_bytes());
    let hcrc = crc32(&buf[s + 4..s + HEADER_LEN]);
    buf[s..s + 4].copy_from_slice(&hcrc.to_le_bytes());
}

/// Like [`seal`], and first encrypts the payload of a record [`encode_put_with`] marked
/// encrypted (its nonce and associated data include `seq`), then computes its payload CRC over
/// the ciphertext. Records that are not encrypted cost one flag test more than [`seal`]. Fails
/// only if the record names a key `codec` does not hold, before anything is changed.
pub fn seal_with(
    buf: &mut [u8],
    record: &Unsealed,
    seq: u64,
    codec: &PayloadCodec,
) -> crate::error::Result<()> {
    let (s, e) = (record.start, record.end);
    let flags = buf[s + 13];
    if flags & FLAG_ENCRYPTED != 0 {
        buf[s + 16..s + 24].copy_from_slice(&seq.to_le_bytes());
        let form = StoredForm {
            flags,
            key_id: u16::from_le_bytes([buf[s + 14], buf[s + 15]]),
        };
        let (header, payload) = buf[s..e].split_at_mut(HEADER_LEN);
        codec.seal(form, seq, &header[AAD_RANGE], payload)?;
        let pcrc = crc32(payload);
        header[4..8].copy_from_slice(&pcrc.to_le_bytes());
    }
    seal(buf, record, seq);
    Ok(())
}

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
    fn zero_header_is_the_end_marker() {
        assert!(is_end_marker(&[0u8; HEADER_LEN]));
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
