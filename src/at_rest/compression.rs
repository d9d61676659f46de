//! Compression of event payloads: [`Compression`] and the framing of a compressed payload.
//!
//! # Format of a compressed payload (all integers little-endian)
//! ```text
//! offset size field
//!  0      1   codec     1 = LZ4 block (lz4_flex), 2 = zstd frame
//!  1      4   raw_len   length of the payload before compression
//!  5      …   data      the compressed bytes
//! ```
//! The record header's flag bit 0 says a payload is compressed; the codec byte says how, so a
//! channel can switch between LZ4 and zstd and still read every segment. A payload is stored
//! compressed only when that saves at least [`MIN_SAVING_PERCENT`] of its size; otherwise it is
//! stored as it was and the flag stays clear. Decompression never allocates more than
//! `raw_len`, and `raw_len` above the reader's bound (`max_event_size`) is refused before
//! anything is allocated.

use crate::format::{DecodeError, Reader};

/// A payload is stored compressed only if that saves at least this share of its bytes.
pub const MIN_SAVING_PERCENT: usize = 10;

/// Bytes of the codec byte and `raw_len` in front of compressed data.
pub const FRAME_OVERHEAD: usize = 5;

/// Default `compression_threshold`: payloads smaller than this are never compressed.
pub const DEFAULT_THRESHOLD: u64 = 256;

/// zstd level used for writes (fast; the level is not needed to read).
#[cfg(feature = "zstd")]
const ZSTD_LEVEL: i32 = 1;

const CODEC_LZ4: u8 = 1;
const CODEC_ZSTD: u8 = 2;

/// How a channel compresses event payloads it writes. Reading handles every codec, whatever
/// this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Store payloads as they are (the default).
    #[default]
    None,
    /// LZ4 (pure Rust, `lz4_flex`): fast, modest ratio.
    Lz4,
    /// zstd at level 1: a better ratio for more CPU. Needs the `zstd` cargo feature (a C build).
    Zstd,
}

impl Compression {
    /// The configuration name: `none`, `lz4` or `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Parses a configuration name (`none`, `lz4`, `zstd`).
    pub fn from_name(name: &str) -> Option<Compression> {
        match name {
            "none" => Some(Compression::None),
            "lz4" => Some(Compression::Lz4),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// True when this build can write with this codec (`zstd` needs the `zstd` cargo feature).
    pub fn is_available(self) -> bool {
        self != Compression::Zstd || cfg!(feature = "zstd")
    }

    /// Appends the compressed frame of `input` to `out` and returns true, if compressing saves
    /// at least [`MIN_SAVING_PERCENT`]; otherwise leaves `out` as it was and returns false.
    pub(crate) fn compress_into(self, input: &[u8], out: &mut Vec<u8>) -> bool {
        let Ok(raw_len) = u32::try_from(input.len()) else {
            return false;
        };
        let limit = input.len() - input.len() * MIN_SAVING_PERCENT / 100;
        let start = out.len();
        let codec = match self {
            Compression::None => return false,
            Compression::Lz4 => CODEC_LZ4,
            Compression::Zstd => CODEC_ZSTD,
        };
        out.push(codec);
        out.extend_from_slice(&raw_len.to_le_bytes());
        let data_start = out.len();
        let written = match self {
            Compression::Lz4 => {
                out.resize(
                    data_start + lz4_flex::block::get_maximum_output_size(input.len()),
                    0,
                );
                lz4_flex::block::compress_into(input, &mut out[data_start..]).ok()
            }
            #[cfg(feature = "zstd")]
            Compression::Zstd => {
                out.resize(data_start + zstd::zstd_safe::compress_bound(input.len()), 0);
                zstd_contexts::compress(input, &mut out[data_start..])
            }
            _ => None,
        };
        match written {
            Some(n) if FRAME_OVERHEAD + n <= limit => {
                out.truncate(data_start + n);
                true
            }
            _ => {
                out.truncate(start);
                false
            }
        }
    }
}

/// Decompresses a compressed frame, refusing a stated size above `max_len`.
pub(crate) fn decompress(frame: &[u8], max_len: u64) -> Result<Vec<u8>, DecodeError> {
    let mut r = Reader::new(frame);
    let codec = r.u8()?;
    let raw_len = r.u32()?;
    if u64::from(raw_len) > max_len {
        return Err(DecodeError::Invalid {
            field: "decompressed length (above max_event_size)",
            value: u64::from(raw_len),
        });
    }
    let data = r.take(r.remaining())?;
    let mut out = vec![0u8; raw_len as usize];
    let n = match codec {
        CODEC_LZ4 => lz4_flex::block::decompress_into(data, &mut out).ok(),
        #[cfg(feature = "zstd")]
        CODEC_ZSTD => zstd_contexts::decompress(data, &mut out),
        #[cfg(not(feature = "zstd"))]
        CODEC_ZSTD => {
            return Err(DecodeError::Invalid {
                field: "compression codec (zstd: this build lacks the `zstd` feature)",
                value: u64::from(codec),
            });
        }
        other => {
            return Err(DecodeError::Invalid {
                field: "compression codec",
                value: u64::from(other),
            });
        }
    };
    match n {
        Some(n) if n == out.len() => Ok(out),
        _ => Err(DecodeError::Invalid {
            field: "compressed payload (does not decompress to its stated length)",
            value: u64::from(raw_len),
        }),
    }
}

/// zstd contexts, one of each per thread: creating one costs more than compressing a small
/// event (measured: 23 us per 512-byte event with a fresh context per call). Compression uses
/// `ZSTD_compressCCtx`, which sizes its tables to the input (a 512-byte event does not clear a
/// 512 KiB window's tables each time).
#[cfg(feature = "zstd")]
mod zstd_contexts {
    use std::cell::RefCell;

    use zstd::zstd_safe::{CCtx, DCtx};

    thread_local! {
        static COMPRESSOR: RefCell<Option<CCtx<'static>>> = const { RefCell::new(None) };
        static DECOMPRESSOR: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
    }

    pub(super) fn compress(input: &[u8], out: &mut [u8]) -> Option<usize> {
        COMPRESSOR.with(|c| {
            let mut c = c.try_borrow_mut().ok()?;
            if c.is_none() {
                *c = Some(CCtx::try_create()?);
            }
            c.as_mut()?.compress(out, input, super::ZSTD_LEVEL).ok()
        })
    }

    pub(super) fn decompress(data: &[u8], out: &mut [u8]) -> Option<usize> {
        DECOMPRESSOR.with(|d| {
            let mut d = d.try_borrow_mut().ok()?;
            if d.is_none() {
                *d = Some(DCtx::try_create()?);
            }
            d.as_mut()?.decompress(out, data).ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codecs() -> Vec<Compression> {
        let mut c = vec![Compression::Lz4];
        if Compression::Zstd.is_available() {
            c.push(Compression::Zstd);
        }
        c
    }

    #[test]
    fn round_trip_and_incompressible_input_is_left_alone() {
        let text = b"GET /index.html HTTP/1.1 200 512 \"-\" \"curl/8.0\"\n".repeat(20);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        for c in codecs() {
            let mut out = vec![9u8];
            assert!(c.compress_into(&text, &mut out), "{c:?}");
            assert!(out.len() < text.len() / 2);
            assert_eq!(decompress(&out[1..], 1 << 20).expect("round trip"), text);
            let mut out2 = vec![9u8];
            assert!(!c.compress_into(&noise, &mut out2), "{c:?} kept noise");
            assert_eq!(out2, vec![9u8]);
        }
        assert!(!Compression::None.compress_into(&text, &mut Vec::new()));
    }

    #[test]
    fn lying_or_damaged_frames_are_errors() {
        let text = b"abcabcabcabcabcabcabcabcabcabcabcabcabcabc".repeat(10);
        for c in codecs() {
            let mut out = Vec::new();
            assert!(c.compress_into(&text, &mut out));
            // Stated size above the bound: refused before allocating.
            assert!(matches!(
                decompress(&out, 10),
                Err(DecodeError::Invalid { .. })
            ));
            // Wrong stated size.
            let mut lie = out.clone();
            lie[1..5].copy_from_slice(&(text.len() as u32 + 1).to_le_bytes());
            assert!(decompress(&lie, 1 << 20).is_err());
            // Every truncation fails cleanly.
            for n in 0..out.len() {
                assert!(decompress(&out[..n], 1 << 20).is_err(), "{c:?} prefix {n}");
            }
        }
        assert!(decompress(&[7, 0, 0, 0, 0], 10).is_err());
    }
}
