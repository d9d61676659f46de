//! AES-256-GCM on record payloads, and the nonces that make it safe.
//!
//! # Format of an encrypted payload
//! ```text
//! offset      size  field
//!  0          12    nonce       salt u32 LE | seq u64 LE (see below)
//! 12          n     ciphertext  of the plain or compressed payload
//! 12+n        16    tag         GCM authentication tag
//! ```
//! The associated data is the record header's fields that replay reads (length, kind, flags,
//! key id, sequence number, transaction id): a change to any of them, to the nonce, to the
//! ciphertext or to the tag makes decryption fail, and the failure is reported as corruption at
//! the record's segment and offset. GCM is used through RustCrypto's `aes-gcm`, which picks the
//! CPU's AES and carry-less multiply instructions at run time where they exist (x86-64 AES-NI and
//! PCLMULQDQ, ARMv8 crypto extensions) and a constant-time software fallback elsewhere.
//!
//! # Nonces never repeat under a key
//! A nonce is a 4-byte random *salt*, drawn once per open of the channel, followed by the
//! record's 8-byte sequence number. Within one open, sequence numbers are handed out once each
//! by a global counter under the append lock, and a record is encrypted exactly once, when it
//! is sealed with its sequence number, so no two records of one open share a nonce. Across opens
//! (restarts, crashes) two records could only share a nonce if both the salt and the sequence
//! number were equal:
//! - replay restarts the counter 2^32 above every sequence number it saw, in the log or the
//!   checkpoint, so a new record's number is above every record that survived;
//! - a record whose write was lost in a crash (never synced) was not seen by replay, so its
//!   number may be handed out again: then its nonce differs from the new record's by the salt,
//!   which is drawn at random at each open (a repeat needs both the lost record's number to be
//!   reused, which needs more than 2^32 unsynced records to be lost at once, and a 1 in 2^32 salt
//!   collision between the two opens).
//!
//! Random 96-bit nonces alone would allow about 2^32 records per key (NIST SP 800-38D's bound for
//! a 2^-32 collision risk): hours at a million events per second. Counter nonces have no such
//! limit; the salt only covers writes that were lost.

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, Nonce, Tag};

use crate::format::DecodeError;

/// Bytes of the nonce in front of an encrypted payload.
pub const NONCE_LEN: usize = 12;
/// Bytes of the GCM tag after the ciphertext.
pub const TAG_LEN: usize = 16;
/// What encryption adds to a payload.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Makes the nonces of one open of a channel: a random salt and the record's sequence number.
#[derive(Debug, Clone, Copy)]
pub struct NonceSource {
    salt: [u8; 4],
}

impl NonceSource {
    /// Draws a fresh salt from the operating system's random source.
    pub fn new() -> std::io::Result<NonceSource> {
        let mut salt = [0u8; 4];
        getrandom::fill(&mut salt).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(NonceSource { salt })
    }

    /// The nonce of the record with sequence number `seq`.
    pub fn nonce(&self, seq: u64) -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        n[..4].copy_from_slice(&self.salt);
        n[4..].copy_from_slice(&seq.to_le_bytes());
        n
    }
}

/// Encrypts in place. `payload` is laid out as the stored payload: `NONCE_LEN` bytes (the nonce
/// is written there), the plaintext (encrypted in place), then `TAG_LEN` bytes (the tag is
/// written there). Fails only for a payload shorter than the overhead or longer than GCM allows
/// (64 GiB), neither of which a valid configuration can produce.
pub(crate) fn seal(
    cipher: &Aes256Gcm,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    payload: &mut [u8],
) -> Result<(), aes_gcm::Error> {
    let len = payload.len();
    if len < OVERHEAD {
        return Err(aes_gcm::Error);
    }
    let (head, rest) = payload.split_at_mut(NONCE_LEN);
    let (text, tag_out) = rest.split_at_mut(len - OVERHEAD);
    head.copy_from_slice(&nonce);
    let tag = cipher.encrypt_inout_detached(&Nonce::from(nonce), aad, text.into())?;
    tag_out.copy_from_slice(tag.as_slice());
    Ok(())
}

/// Checks and decrypts a stored payload (nonce, ciphertext, tag); returns the plaintext.
/// `key_id` only labels the error.
pub(crate) fn open(
    cipher: &Aes256Gcm,
    key_id: u16,
    aad: &[u8],
    stored: &[u8],
) -> Result<Vec<u8>, DecodeError> {
    if stored.len() < OVERHEAD {
        return Err(DecodeError::Truncated {
            needed: OVERHEAD as u64,
            available: stored.len() as u64,
        });
    }
    let (nonce, rest) = stored.split_at(NONCE_LEN);
    let (text, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut nonce_bytes = [0u8; NONCE_LEN];
    nonce_bytes.copy_from_slice(nonce);
    let mut tag_bytes = [0u8; TAG_LEN];
    tag_bytes.copy_from_slice(tag);
    let mut out = text.to_vec();
    cipher
        .decrypt_inout_detached(
            &Nonce::from(nonce_bytes),
            aad,
            out.as_mut_slice().into(),
            &Tag::from(tag_bytes),
        )
        .map_err(|_| DecodeError::Authentication { key_id })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::KeyInit;

    fn sealed(cipher: &Aes256Gcm, aad: &[u8], text: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; NONCE_LEN];
        buf.extend_from_slice(text);
        buf.extend_from_slice(&[0u8; TAG_LEN]);
        let nonces = NonceSource::new().expect("salt");
        seal(cipher, nonces.nonce(42), aad, &mut buf).expect("seal");
        buf
    }

    #[test]
    fn round_trip_and_every_flip_is_detected() {
        let cipher = Aes256Gcm::new(&[7u8; 32].into());
        let aad = [1u8; 24];
        let buf = sealed(&cipher, &aad, b"secret event");
        assert!(!buf.windows(6).any(|w| w == b"secret"));
        assert_eq!(open(&cipher, 1, &aad, &buf).expect("open"), b"secret event");
        for i in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(open(&cipher, 1, &aad, &bad).is_err(), "flip {i} undetected");
        }
        for i in 0..aad.len() * 8 {
            let mut bad = aad;
            bad[i / 8] ^= 1 << (i % 8);
            assert!(
                open(&cipher, 1, &bad, &buf).is_err(),
                "aad flip {i} undetected"
            );
        }
        let other = Aes256Gcm::new(&[8u8; 32].into());
        assert!(matches!(
            open(&other, 9, &aad, &buf),
            Err(DecodeError::Authentication { key_id: 9 })
        ));
        assert!(open(&cipher, 1, &aad, &buf[..OVERHEAD - 1]).is_err());
    }

    #[test]
    fn nonces_carry_salt_and_sequence_number() {
        let a = NonceSource::new().expect("salt");
        assert_ne!(a.nonce(1), a.nonce(2));
        assert_eq!(&a.nonce(0x0102)[4..6], &[2, 1]);
        // Two opens reusing a sequence number (a write lost in a crash) still differ, by the
        // salt (a 2^-32 chance of a false failure here).
        let b = NonceSource::new().expect("salt");
        assert_ne!(a.nonce(7), b.nonce(7));
    }
}
