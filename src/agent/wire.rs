//! The batch formats the HTTP source accepts and the HTTP sink sends.
//!
//! Two formats, chosen by the request's `Content-Type`:
//!
//! - **JSON** (`application/json`), Flume's HTTP source format: an array of objects,
//!   `[{"headers": {"k": "v"}, "body": "text"}, ...]`. Header values are strings; `headers`
//!   and `body` may be left out (no headers, an empty body). A body that is not UTF-8 cannot be
//!   a JSON string, so it travels as `"body_base64"` (standard alphabet, padded) instead of
//!   `"body"`; an object may hold one of the two, never both. Flume's own HTTP source does not
//!   know `body_base64`: send non-UTF-8 bodies to Flume in a format it reads, or not at all.
//!   Unknown fields are refused, so a typo (`"bdy"`) is a 400, not an empty event.
//! - **Binary** (`application/x-tidegate-batch`), for agent-to-agent hops: length-prefixed
//!   bytes with a CRC-32, no escaping, any body. Its layout is below and in
//!   docs/components.md.
//!
//! ## Binary format, version 1
//!
//! Every integer is fixed-width little-endian.
//!
//! ```text
//! batch  = magic "TGWB" (4) | version u16 = 1 | flags u16 = 0 | count u32 | event * count | crc u32
//! event  = header_count u32 | body_len u32 | header * header_count | body (body_len bytes)
//! header = key_len u32 | key (UTF-8) | value_len u32 | value (UTF-8)
//! ```
//!
//! `crc` is the CRC-32 (IEEE) of every byte before it. A batch is exactly as long as its
//! content: trailing bytes are an error, as are header keys repeated within one event (an
//! [`Event`]'s headers are a map, so one of them would be lost silently).
//!
//! # Invariants
//! - Decoding never panics and never allocates more than the input it was given: the CRC is
//!   checked first, and every count or length is checked against the bytes that remain before
//!   anything is reserved.
//! - `decode_binary(encode_binary(events)) == events`, for every batch `encode_binary` accepts
//!   (the round trip is a proptest in tests/components_wire.rs, the decoder a fuzz target).
//! - Do not add, remove or reorder fields: a change is a new version, and the decoder keeps
//!   reading version 1.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::Event;
use crate::format::{DecodeError, Reader, Writer, crc32};

/// The binary format's magic number.
pub const MAGIC: [u8; 4] = *b"TGWB";
/// The binary format version this build writes and reads.
pub const VERSION: u16 = 1;
/// Bytes of the binary batch header (magic, version, flags, count).
pub const HEADER_LEN: usize = 12;
/// Bytes of the trailing CRC.
pub const CRC_LEN: usize = 4;
/// Smallest encoded event (two zero counts).
const MIN_EVENT_LEN: usize = 8;
/// Smallest encoded header (two zero lengths).
const MIN_HEADER_LEN: usize = 8;

/// The `Content-Type` of a JSON batch.
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// The `Content-Type` of a binary batch.
pub const BINARY_CONTENT_TYPE: &str = "application/x-tidegate-batch";

/// Which of the two formats a batch is in (the HTTP sink's `format` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Flume's JSON array of `{headers, body}` objects.
    #[default]
    Json,
    /// The binary format of this module.
    Binary,
}

impl Format {
    /// The `Content-Type` a batch in this format is sent with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => JSON_CONTENT_TYPE,
            Format::Binary => BINARY_CONTENT_TYPE,
        }
    }

    /// Encodes `events` in this format.
    pub fn encode(self, events: &[Event]) -> Result<Vec<u8>, WireError> {
        match self {
            Format::Json => Ok(encode_json(events)),
            Format::Binary => encode_binary(events),
        }
    }

    /// Decodes a batch in this format.
    pub fn decode(self, bytes: &[u8]) -> Result<Vec<Event>, WireError> {
        match self {
            Format::Json => decode_json(bytes),
            Format::Binary => decode_binary(bytes),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Json => "JSON",
            Format::Binary => "binary",
        })
    }
}

/// Why a batch could not be encoded or decoded. The message is what the HTTP source answers
/// with its 400.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The JSON is malformed or does not have the batch's shape.
    #[error("malformed JSON batch: {0}")]
    Json(String),
    /// One event of a JSON batch is wrong.
    #[error("malformed JSON batch: event {index}: {message}")]
    JsonEvent {
        /// The event's position in the array, from 0.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// The binary batch is malformed.
    #[error("malformed binary batch at byte {offset}: {source}")]
    Binary {
        /// Where decoding stopped.
        offset: usize,
        /// What is wrong.
        #[source]
        source: DecodeError,
    },
    /// A field is too long for the binary format's 32-bit lengths.
    #[error("event {index}: {field} of {len} bytes is too long for the binary format (4 GiB)")]
    TooLong {
        /// The event's position in the batch.
        index: usize,
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEvent {
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
}

/// Encodes `events` as a JSON array; bodies that are not UTF-8 go as `body_base64`.
pub fn encode_json(events: &[Event]) -> Vec<u8> {
    let mut out = vec![b'['];
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        encode_json_event(&mut out, e);
    }
    out.push(b']');
    out
}

/// Appends one event as a JSON object, `{"headers": {..}, "body": ".."}` (or `body_base64`),
/// with no newline in it: the `json` serializer of the file_roll sink writes one per line.
pub fn encode_json_event(out: &mut Vec<u8>, e: &Event) {
    let (body, body_base64) = match std::str::from_utf8(e.body()) {
        Ok(text) => (Some(text), None),
        Err(_) => (None, Some(BASE64.encode(e.body()))),
    };
    let object = JsonEventRef {
        headers: e.headers(),
        body,
        body_base64,
    };
    // Writing strings and string maps into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &object);
}

#[derive(Serialize)]
struct JsonEventRef<'a> {
    headers: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

/// Decodes a JSON batch (see the module docs).
pub fn decode_json(bytes: &[u8]) -> Result<Vec<Event>, WireError> {
    let batch: Vec<JsonEvent> =
        serde_json::from_slice(bytes).map_err(|e| WireError::Json(e.to_string()))?;
    batch
        .into_iter()
        .enumerate()
        .map(|(index, e)| {
            let body = match (e.body, e.body_base64) {
                (Some(_), Some(_)) => {
                    return Err(WireError::JsonEvent {
                        index,
                        message: "has both \"body\" and \"body_base64\"".into(),
                    });
                }
                (Some(text), None) => text.into_bytes(),
                (None, Some(b64)) => BASE64.decode(b64).map_err(|err| WireError::JsonEvent {
                    index,
                    message: format!("\"body_base64\" is not base64: {err}"),
                })?,
                (None, None) => Vec::new(),
            };
            Ok(Event::from_parts(e.headers, body))
        })
        .collect()
}

/// Encodes `events` in the binary format. Fails only on a field over 4 GiB.
pub fn encode_binary(events: &[Event]) -> Result<Vec<u8>, WireError> {
    let size: usize = events
        .iter()
        .map(|e| {
            MIN_EVENT_LEN
                + e.body().len()
                + e.headers()
                    .iter()
                    .map(|(k, v)| MIN_HEADER_LEN + k.len() + v.len())
                    .sum::<usize>()
        })
        .sum();
    let mut buf = Vec::with_capacity(HEADER_LEN + size + CRC_LEN);
    let mut w = Writer::new(&mut buf);
    w.bytes(&MAGIC);
    w.u16(VERSION);
    w.u16(0);
    w.u32(len32(events.len(), 0, "event count")?);
    for (index, e) in events.iter().enumerate() {
        w.u32(len32(e.headers().len(), index, "header count")?);
        w.u32(len32(e.body().len(), index, "body")?);
        for (k, v) in e.headers() {
            w.u32(len32(k.len(), index, "header key")?);
            w.bytes(k.as_bytes());
            w.u32(len32(v.len(), index, "header value")?);
            w.bytes(v.as_bytes());
        }
        w.bytes(e.body());
    }
    let crc = crc32(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    Ok(buf)
}

fn len32(len: usize, index: usize, field: &'static str) -> Result<u32, WireError> {
    u32::try_from(len).map_err(|_| WireError::TooLong { index, field, len })
}

/// Decodes a binary batch (see the module docs).
pub fn decode_binary(bytes: &[u8]) -> Result<Vec<Event>, WireError> {
    let at = |offset: usize| move |source: DecodeError| WireError::Binary { offset, source };
    if bytes.len() < HEADER_LEN + CRC_LEN {
        return Err(at(0)(DecodeError::Truncated {
            needed: (HEADER_LEN + CRC_LEN) as u64,
            available: bytes.len() as u64,
        }));
    }
    let (content, crc_bytes) = bytes.split_at(bytes.len() - CRC_LEN);
    let mut r = Reader::new(content);
    let magic = r.take(MAGIC.len()).map_err(at(0))?;
    if magic != MAGIC {
        return Err(at(0)(DecodeError::BadMagic {
            found: magic.to_vec(),
        }));
    }
    let version = r.u16().map_err(at(4))?;
    if version != VERSION {
        return Err(at(4)(DecodeError::UnsupportedVersion {
            found: version,
            supported: VERSION,
        }));
    }
    let stored = Reader::new(crc_bytes).u32().map_err(at(content.len()))?;
    let computed = crc32(content);
    if stored != computed {
        return Err(at(content.len())(DecodeError::Checksum {
            stored,
            computed,
        }));
    }
    let flags = r.u16().map_err(at(6))?;
    if flags != 0 {
        return Err(at(6)(DecodeError::Invalid {
            field: "flags",
            value: u64::from(flags),
        }));
    }
    let count = r.count("event count", MIN_EVENT_LEN).map_err(at(8))?;
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        let start = r.position();
        let header_count = r.u32().map_err(at(start))?;
        let body_len = r.u32().map_err(at(start + 4))?;
        let header_bytes = (header_count as usize).saturating_mul(MIN_HEADER_LEN);
        if header_bytes.saturating_add(body_len as usize) > r.remaining() {
            return Err(at(start)(DecodeError::Invalid {
                field: "header count or body length (past the end of the batch)",
                value: u64::from(header_count).max(u64::from(body_len)),
            }));
        }
        let mut headers = BTreeMap::new();
        for _ in 0..header_count {
            let pos = r.position();
            let key = text(&mut r, "header key").map_err(at(pos))?;
            let value = text(&mut r, "header value").map_err(at(pos))?;
            if headers.insert(key.to_owned(), value.to_owned()).is_some() {
                return Err(at(pos)(DecodeError::Invalid {
                    field: "repeated header key in event",
                    value: events.len() as u64,
                }));
            }
        }
        let pos = r.position();
        let body = r.take(body_len as usize).map_err(at(pos))?;
        events.push(Event::from_parts(headers, body.to_vec()));
    }
    if r.remaining() != 0 {
        return Err(at(r.position())(DecodeError::Invalid {
            field: "trailing bytes after the last event",
            value: r.remaining() as u64,
        }));
    }
    Ok(events)
}

fn text<'a>(r: &mut Reader<'a>, field: &'static str) -> Result<&'a str, DecodeError> {
    let len = r.u32()?;
    let bytes = r.take(len as usize)?;
    std::str::from_utf8(bytes).map_err(|_| DecodeError::Utf8 { field })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Event> {
        vec![
            Event::new(b"hello".to_vec()).with_header("host", "a"),
            Event::new(vec![0xff, 0x00, 0x80]),
            Event::new(Vec::new())
                .with_header("k", "")
                .with_header("", "v"),
        ]
    }

    #[test]
    fn binary_round_trips_and_detects_damage() {
        let bytes = encode_binary(&sample()).expect("encode");
        assert_eq!(&bytes[..4], b"TGWB");
        assert_eq!(decode_binary(&bytes).expect("decode"), sample());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode_binary(&bad).is_err(), "flip at {i} went unnoticed");
        }
        let mut longer = bytes.clone();
        longer.insert(HEADER_LEN, 0);
        assert!(decode_binary(&longer).is_err());
        assert!(decode_binary(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn json_sends_non_utf8_bodies_as_base64() {
        let bytes = encode_json(&sample());
        let text = String::from_utf8(bytes.clone()).expect("JSON is UTF-8");
        assert!(text.contains(r#""body_base64":"/wCA""#), "{text}");
        assert!(text.contains(r#""body":"hello""#), "{text}");
        assert_eq!(decode_json(&bytes).expect("decode"), sample());
    }

    #[test]
    fn json_errors_name_the_event() {
        let e = decode_json(br#"[{"body":"a"},{"body":"b","body_base64":"Yg=="}]"#)
            .expect_err("both bodies");
        assert!(e.to_string().contains("event 1"), "{e}");
        let e = decode_json(br#"[{"bdy":"a"}]"#).expect_err("unknown field");
        assert!(e.to_string().contains("bdy"), "{e}");
        let e = decode_json(br#"[{"headers":{"a":1}}]"#).expect_err("number header");
        assert!(matches!(e, WireError::Json(_)), "{e}");
        assert_eq!(
            decode_json(br#"[{}]"#).expect("empty object"),
            vec![Event::new(Vec::new())]
        );
    }
}
