//! Event data at rest: compression and authenticated encryption of Put payloads in the log.
//!
//! Only the payload of a Put record (the event's body and headers) is transformed. Take, Commit
//! and Rollback records, every record header, the segment headers and the checkpoint stay in the
//! clear: they hold sequence numbers, transaction ids, lengths and record positions, never event
//! data, and replay reads them without any key. docs/security.md has the threat model.
//!
//! # The stored form of a Put payload
//! ```text
//! flags (record header)   stored payload
//! 0                       put payload                                   (format/record.rs)
//! compressed              codec u8 | raw_len u32 | compressed put payload   (compression.rs)
//! encrypted               nonce[12] | AES-256-GCM(put payload) | tag[16]    (cipher.rs)
//! compressed + encrypted  nonce[12] | AES-256-GCM(codec | raw_len | data) | tag[16]
//! ```
//! With `batch_compression`, the events of a put transaction are compressed and/or encrypted
//! together as one PutBatch record (`count u32` in the clear, then the stored form above of
//! their raw block: compressed when compressing, or only encrypted; the count is bound as
//! associated data after the header's): one nonce and one tag per batch
//! ([`PayloadCodec::write_batch_payload`], DESIGN.md §3.5).
//!
//! Compression comes first (ciphertext does not compress). The record header's `key_id` names
//! the key of an encrypted payload; its CRC covers the stored (encrypted) bytes, so replay checks
//! the log without keys, and the GCM tag then proves the event is the one written, with the
//! header it was written with.
//!
//! # When the work is done
//! Compression runs when an event is put, outside every lock, so the stored length is known when
//! the put reserves capacity. Encryption runs when the record is sealed under the append lock,
//! because the nonce and the associated data include the sequence number, which is only known
//! there; GCM with the CPU's AES instructions costs about 0.6-0.9 us per 512-byte event on our
//! machines (docs/benchmarks.md, "at_rest").
//! Decryption and decompression run when a take reads the event.

mod cipher;
mod compression;
mod keys;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

pub use cipher::{NONCE_LEN, NonceSource, OVERHEAD as ENCRYPTION_OVERHEAD, TAG_LEN};
pub use compression::{
    Compression, DEFAULT_THRESHOLD as DEFAULT_COMPRESSION_THRESHOLD, FRAME_OVERHEAD,
    MIN_SAVING_PERCENT,
};
pub use keys::{EncryptionConfig, Keyring, generate_key_file};

use crate::error::{Error, Result};
use crate::format::DecodeError;
use crate::stats::Counters;

pub use crate::format::record::{FLAG_COMPRESSED, FLAG_ENCRYPTED};

/// How a payload was stored: the record header's `flags` and `key_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoredForm {
    /// [`FLAG_COMPRESSED`] and/or [`FLAG_ENCRYPTED`].
    pub flags: u8,
    /// The key id (0 when not encrypted).
    pub key_id: u16,
}

/// True when AES runs on the CPU's AES instructions here (detected at run time); otherwise a
/// constant-time software implementation is used, several times slower.
pub fn aes_hardware_accelerated() -> bool {
    aes_gcm::aes::hardware_accelerated()
}

/// Counters of the work done on payloads (reported in [`ChannelStats`](crate::ChannelStats)).
#[derive(Debug, Default)]
pub(crate) struct CodecCounters {
    /// Payload bytes of the events offered to the compressor (at or above the threshold).
    pub(crate) compress_in: AtomicU64,
    /// What those payloads take on disk (compressed, or as they were when it did not pay).
    pub(crate) compress_out: AtomicU64,
    /// Events stored compressed.
    pub(crate) compressed_events: AtomicU64,
    /// Nanoseconds spent compressing and decompressing.
    pub(crate) compress_ns: AtomicU64,
    /// Events encrypted.
    pub(crate) encrypted_events: AtomicU64,
    /// PutBatch records written (each holds several compressed events).
    pub(crate) compressed_batches: AtomicU64,
}

/// A channel's payload codec: its compression setting, its keys, and the nonces of this open.
pub struct PayloadCodec {
    compression: Compression,
    threshold: usize,
    keyring: Option<Arc<Keyring>>,
    encrypt: bool,
    nonces: NonceSource,
    batch: bool,
    pub(crate) counters: CodecCounters,
}

impl std::fmt::Debug for PayloadCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadCodec")
            .field("compression", &self.compression)
            .field("threshold", &self.threshold)
            .field("keyring", &self.keyring)
            .field("encrypt", &self.encrypt)
            .finish_non_exhaustive()
    }
}

impl PayloadCodec {
    /// A codec that compresses payloads of at least `threshold` bytes with `compression` and, if
    /// `keyring` is given (and its active key is not 0), encrypts every Put payload with its
    /// active key. Draws this open's nonce salt.
    pub fn new(
        compression: Compression,
        threshold: u64,
        keyring: Option<Arc<Keyring>>,
    ) -> Result<PayloadCodec> {
        let nonces = NonceSource::new().map_err(|e| Error::Io {
            op: "drawing a random nonce salt",
            path: "getrandom".into(),
            source: e,
        })?;
        if keyring.is_some() && !aes_hardware_accelerated() {
            tracing::warn!(
                "this CPU has no AES instructions: encryption uses a slower software implementation"
            );
        }
        Ok(PayloadCodec {
            compression,
            threshold: usize::try_from(threshold).unwrap_or(usize::MAX),
            encrypt: keyring.as_ref().is_some_and(|k| k.active_id() != 0),
            keyring,
            nonces,
            batch: false,
            counters: CodecCounters::default(),
        })
    }

    /// A codec that stores payloads as they are and reads every form it has keys for.
    pub fn plain(keyring: Option<Arc<Keyring>>) -> Result<PayloadCodec> {
        let mut c = PayloadCodec::new(Compression::None, u64::MAX, keyring)?;
        c.encrypt = false;
        Ok(c)
    }

    /// The keys, if encryption is configured.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_deref()
    }

    /// True when nothing is transformed on write (the payload can be encoded straight into the
    /// record).
    pub fn is_identity(&self) -> bool {
        !self.encrypt && self.compression == Compression::None
    }

    /// Stored length of a payload of `plain_len` bytes, if compression does not apply.
    pub fn stored_len_uncompressed(&self, plain_len: usize) -> usize {
        plain_len + if self.encrypt { cipher::OVERHEAD } else { 0 }
    }

    /// Appends the stored form of a payload of `plain_len` bytes to `out`; `encode` appends the
    /// plain payload to the buffer it is given. An encrypted payload gets room for its nonce and
    /// tag and is encrypted later by [`PayloadCodec::seal`]. `scratch` is reused between calls.
    pub fn write_payload(
        &self,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        plain_len: usize,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> StoredForm {
        self.write_payload_opt(out, scratch, plain_len, true, encode)
    }

    /// [`PayloadCodec::write_payload`], compressing only if `compress` (a payload of a batch
    /// that did not compress is not tried again on its own).
    pub fn write_payload_opt(
        &self,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        plain_len: usize,
        compress: bool,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> StoredForm {
        let mut form = StoredForm::default();
        if self.encrypt {
            form.flags |= FLAG_ENCRYPTED;
            form.key_id = self.keyring.as_ref().map_or(0, |k| k.active_id());
            out.extend_from_slice(&[0u8; NONCE_LEN]);
        }
        if compress && self.compression != Compression::None && plain_len >= self.threshold {
            scratch.clear();
            encode(scratch);
            let t = Instant::now();
            let before = out.len();
            let kept = self.compression.compress_into(scratch, out);
            if kept {
                form.flags |= FLAG_COMPRESSED;
            } else {
                out.extend_from_slice(scratch);
            }
            let c = &self.counters;
            Counters::add(&c.compress_ns, t.elapsed().as_nanos() as u64);
            Counters::add(&c.compress_in, scratch.len() as u64);
            Counters::add(&c.compress_out, (out.len() - before) as u64);
            Counters::add(&c.compressed_events, u64::from(kept));
        } else {
            encode(out);
        }
        if self.encrypt {
            out.extend_from_slice(&[0u8; TAG_LEN]);
            Counters::add(&self.counters.encrypted_events, 1);
        }
        form
    }

    /// Writes PutBatch records (when it compresses or encrypts) if `on`; otherwise transforms
    /// event by event. Off by default.
    #[must_use]
    pub fn with_batching(mut self, on: bool) -> Self {
        self.batch = on;
        self
    }

    /// True when this codec writes PutBatch records: batching is on and it compresses or
    /// encrypts (one seal per batch instead of one per event).
    pub fn batches(&self) -> bool {
        self.batch && (self.compression != Compression::None || self.encrypt)
    }

    /// True when this codec compresses.
    pub fn compresses(&self) -> bool {
        self.compression != Compression::None
    }

    /// Appends the stored form of a PutBatch's raw block of `count` events to `out`: compressed
    /// when this codec compresses, and, if it encrypts, with room for the nonce and tag
    /// (encrypted later by [`PayloadCodec::seal`]). Returns `None`, leaving `out` as it was,
    /// when this codec does not batch or compressing saves less than [`MIN_SAVING_PERCENT`].
    /// Counts the work.
    pub fn write_batch_payload(
        &self,
        out: &mut Vec<u8>,
        raw: &[u8],
        count: u32,
    ) -> Option<StoredForm> {
        if !self.batches() {
            return None;
        }
        let start = out.len();
        if !self.compresses() {
            // Encryption only: the raw block as it is, sealed once for the whole batch.
            let form = StoredForm {
                flags: FLAG_ENCRYPTED,
                key_id: self.keyring.as_ref().map_or(0, |k| k.active_id()),
            };
            out.extend_from_slice(&[0u8; NONCE_LEN]);
            out.extend_from_slice(raw);
            out.extend_from_slice(&[0u8; TAG_LEN]);
            Counters::add(&self.counters.encrypted_events, u64::from(count));
            return Some(form);
        }
        let mut form = StoredForm {
            flags: FLAG_COMPRESSED,
            key_id: 0,
        };
        if self.encrypt {
            form.flags |= FLAG_ENCRYPTED;
            form.key_id = self.keyring.as_ref().map_or(0, |k| k.active_id());
            out.extend_from_slice(&[0u8; NONCE_LEN]);
        }
        let t = Instant::now();
        let before = out.len();
        let kept = self.compression.compress_into(raw, out);
        let c = &self.counters;
        Counters::add(&c.compress_ns, t.elapsed().as_nanos() as u64);
        Counters::add(&c.compress_in, raw.len() as u64);
        if !kept {
            // Counted as stored as it was (the caller writes the events as Put records).
            Counters::add(&c.compress_out, raw.len() as u64);
            out.truncate(start);
            return None;
        }
        Counters::add(&c.compress_out, (out.len() - before) as u64);
        Counters::add(&c.compressed_events, u64::from(count));
        Counters::add(&c.compressed_batches, 1);
        if self.encrypt {
            out.extend_from_slice(&[0u8; TAG_LEN]);
            Counters::add(&c.encrypted_events, u64::from(count));
        }
        Some(form)
    }

    /// Encrypts a stored payload in place (nonce and tag space included) with key `key_id`, the
    /// record's sequence number `seq` and the header's associated data `aad`. Does nothing for
    /// a payload that is not encrypted.
    pub fn seal(&self, form: StoredForm, seq: u64, aad: &[u8], payload: &mut [u8]) -> Result<()> {
        if form.flags & FLAG_ENCRYPTED == 0 {
            return Ok(());
        }
        let cipher = self
            .keyring
            .as_ref()
            .and_then(|k| k.cipher(form.key_id))
            .ok_or_else(|| Error::Config {
                key: "encryption",
                message: format!("key {} is not loaded", form.key_id),
            })?;
        cipher::seal(cipher, self.nonces.nonce(seq), aad, payload).map_err(|_| Error::Config {
            key: "max_event_size",
            message: format!("a payload of {} bytes cannot be encrypted", payload.len()),
        })
    }

    /// The plain payload of a stored one: decrypts (checking the tag) and decompresses (at most
    /// `max_len` bytes) as `form` says. Borrows when nothing was transformed.
    pub fn read_payload<'a>(
        &self,
        form: StoredForm,
        aad: &[u8],
        stored: &'a [u8],
        max_len: u64,
    ) -> std::result::Result<Cow<'a, [u8]>, DecodeError> {
        let mut data = Cow::Borrowed(stored);
        if form.flags & FLAG_ENCRYPTED != 0 {
            let cipher = self
                .keyring
                .as_ref()
                .and_then(|k| k.cipher(form.key_id))
                .ok_or(DecodeError::MissingKey {
                    key_id: form.key_id,
                })?;
            data = Cow::Owned(cipher::open(cipher, form.key_id, aad, stored)?);
        }
        if form.flags & FLAG_COMPRESSED != 0 {
            let t = Instant::now();
            let out = compression::decompress(&data, max_len);
            Counters::add(&self.counters.compress_ns, t.elapsed().as_nanos() as u64);
            data = Cow::Owned(out?);
        }
        Ok(data)
    }
}
