//! Encryption keys: [`EncryptionConfig`] names key files by numeric id, [`Keyring`] loads them.
//!
//! A key file holds one AES-256 key: either exactly 32 raw bytes, or 64 hexadecimal characters;
//! one trailing newline (`\n` or `\r\n`) is ignored. Create one with
//! `head -c 32 /dev/urandom > k1.key && chmod 600 k1.key` (or `openssl rand -hex 32`).
//!
//! Every record written with encryption names its key by a 16-bit id (`key_id` in the record
//! header; 0 means "not encrypted"), so ids run from 1 to 65535 and must never be reassigned to a
//! different key while a segment written with the old one may still exist. `active_key` chooses
//! the key for new writes; every other listed key is only used to read older records. Rotation
//! is: add a new key under a new id, make it active, restart; remove the old key once no segment
//! written with it is left (replay refuses to open, naming the key id and segment, when a queued
//! event needs a key that is not listed).
//!
//! Key files are read once, at open. A key file that its group or other users can access is
//! loaded, with a warning.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::{Aes256Gcm, KeyInit};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The configuration key errors name.
const CONFIG_KEY: &str = "encryption";

/// Which key files a channel uses and which of them encrypts new writes.
///
/// ```
/// use tidegate::at_rest::EncryptionConfig;
/// let enc = EncryptionConfig::new(2).key(1, "/etc/tidegate/k1.key").key(2, "/etc/tidegate/k2.key");
/// assert_eq!(enc.active_key(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionConfig {
    active_key: u16,
    keys: BTreeMap<u16, PathBuf>,
}

impl EncryptionConfig {
    /// Encrypt new writes with key `active_key` (1..=65535), which must also be listed with
    /// [`EncryptionConfig::key`]. `active_key = 0` writes new events in the clear and only reads
    /// with the listed keys (to turn encryption off while encrypted events are still queued).
    pub fn new(active_key: u16) -> Self {
        EncryptionConfig {
            active_key,
            keys: BTreeMap::new(),
        }
    }

    /// Lists key `id` (1..=65535), read from the key file at `path`. Listing an id twice keeps
    /// the last path.
    #[must_use]
    pub fn key(mut self, id: u16, path: impl Into<PathBuf>) -> Self {
        self.keys.insert(id, path.into());
        self
    }

    /// The id of the key that encrypts new writes.
    pub fn active_key(&self) -> u16 {
        self.active_key
    }

    /// Every listed key id with its file, in id order.
    pub fn keys(&self) -> impl Iterator<Item = (u16, &Path)> {
        self.keys.iter().map(|(id, p)| (*id, p.as_path()))
    }

    /// Checks the ids without reading any file: ids are 1..=65535 and the active key is listed.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.keys.contains_key(&0) {
            return Err(config_error(
                "key id 0 is reserved (it means \"not encrypted\"): use ids 1 to 65535".into(),
            ));
        }
        if self.active_key != 0 && !self.keys.contains_key(&self.active_key) {
            return Err(config_error(format!(
                "active_key {} is not among the listed keys ({})",
                self.active_key,
                self.id_list()
            )));
        }
        Ok(())
    }

    fn id_list(&self) -> String {
        if self.keys.is_empty() {
            return "none".into();
        }
        self.keys
            .keys()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn config_error(message: String) -> Error {
    Error::Config {
        key: CONFIG_KEY,
        message,
    }
}

/// One loaded key.
struct LoadedKey {
    cipher: Aes256Gcm,
    /// Where it came from, for error messages (`None` for keys given as bytes).
    source: Option<PathBuf>,
}

/// The loaded keys of a channel: the active one for writes, all of them for reads. The key
/// bytes live only inside the AES key schedules, which are wiped when the keyring is dropped.
pub struct Keyring {
    active: u16,
    keys: BTreeMap<u16, LoadedKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// Reads every key file of `cfg`. Fails with [`Error::Config`] naming the key id and path
    /// when a file cannot be read or does not hold a key; warns about loose permissions.
    pub fn load(cfg: &EncryptionConfig) -> Result<Keyring> {
        cfg.validate()?;
        let mut keys = BTreeMap::new();
        for (id, path) in cfg.keys() {
            let bad = |why: String| config_error(format!("key {id} ({}): {why}", path.display()));
            let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| bad(e.to_string()))?);
            warn_if_loose(id, path);
            let key = parse_key(&bytes).map_err(bad)?;
            keys.insert(
                id,
                LoadedKey {
                    cipher: cipher_for(&key),
                    source: Some(path.to_path_buf()),
                },
            );
        }
        Ok(Keyring {
            active: cfg.active_key,
            keys,
        })
    }

    /// A keyring from key bytes held in memory (tests, benchmarks, and programs that fetch keys
    /// from a secret store themselves). `active` must be among `keys`; ids are 1..=65535.
    pub fn from_bytes(
        active: u16,
        keys: impl IntoIterator<Item = (u16, [u8; 32])>,
    ) -> Result<Self> {
        let mut map = BTreeMap::new();
        for (id, bytes) in keys {
            let bytes = Zeroizing::new(bytes);
            map.insert(
                id,
                LoadedKey {
                    cipher: cipher_for(&bytes),
                    source: None,
                },
            );
        }
        if map.contains_key(&0) || !map.contains_key(&active) {
            return Err(config_error(format!(
                "active key {active} must be listed, and key ids run from 1 to 65535"
            )));
        }
        Ok(Keyring { active, keys: map })
    }

    /// The id of the key that encrypts new writes (0: new writes are not encrypted).
    pub fn active_id(&self) -> u16 {
        self.active
    }

    /// True when key `id` is loaded.
    pub fn contains(&self, id: u16) -> bool {
        self.keys.contains_key(&id)
    }

    /// The cipher for key `id`.
    pub(crate) fn cipher(&self, id: u16) -> Option<&Aes256Gcm> {
        self.keys.get(&id).map(|k| &k.cipher)
    }

    /// Where key `id` was read from, for messages ("in memory" for keys given as bytes).
    pub fn describe(&self, id: u16) -> String {
        match self.keys.get(&id).and_then(|k| k.source.as_ref()) {
            Some(p) => p.display().to_string(),
            None if self.contains(id) => "given in memory".into(),
            None => "not configured".into(),
        }
    }

    /// The loaded key ids, in order.
    pub fn ids(&self) -> Vec<u16> {
        self.keys.keys().copied().collect()
    }
}

/// Creates a new key file at `path` holding a random key as 64 hex characters and a newline,
/// readable by its owner only (mode 0600 on Unix). Fails if the file exists: a key file is never
/// overwritten, since records written with the old key would become unreadable.
pub fn generate_key_file(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(key.as_mut_slice()).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut text = Zeroizing::new(String::with_capacity(65));
    for b in key.iter() {
        text.push(char::from(HEX[usize::from(b >> 4)]));
        text.push(char::from(HEX[usize::from(b & 15)]));
    }
    text.push('\n');
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn cipher_for(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(key.into())
}

/// Parses a key file: 32 raw bytes, or 64 hex characters; one trailing newline is ignored.
fn parse_key(bytes: &[u8]) -> std::result::Result<Zeroizing<[u8; 32]>, String> {
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() == 32 {
        key.copy_from_slice(bytes);
        return Ok(key);
    }
    let trimmed = bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .unwrap_or(bytes);
    match trimmed.len() {
        32 => key.copy_from_slice(trimmed),
        64 => {
            for (out, pair) in key.iter_mut().zip(trimmed.chunks_exact(2)) {
                let hi = hex_digit(pair[0]);
                let lo = hex_digit(pair[1]);
                match (hi, lo) {
                    (Some(h), Some(l)) => *out = (h << 4) | l,
                    _ => {
                        return Err("64 characters, but not all of them are hex digits".into());
                    }
                }
            }
        }
        n => {
            return Err(format!(
                "holds {n} bytes; a key file holds 32 raw bytes or 64 hex characters (optionally followed by a newline)"
            ));
        }
    }
    Ok(key)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Warns when the group or other users may access a key file.
fn warn_if_loose(id: u16, path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    key_id = id,
                    path = %path.display(),
                    mode = format_args!("{mode:o}"),
                    "key file is accessible to its group or other users; `chmod 600` it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (id, path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_hex_keys_parse_to_the_same_bytes() {
        let raw: Vec<u8> = (0u8..32).collect();
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let expected = parse_key(&raw).expect("raw");
        assert_eq!(*parse_key(hex.as_bytes()).expect("hex"), *expected);
        assert_eq!(
            *parse_key(format!("{}\n", hex.to_uppercase()).as_bytes()).expect("hex+nl"),
            *expected
        );
        let mut raw_nl = raw.clone();
        raw_nl.extend_from_slice(b"\r\n");
        assert_eq!(*parse_key(&raw_nl).expect("raw+crlf"), *expected);
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(parse_key(b"short").is_err());
        assert!(parse_key(&[b'g'; 64]).is_err());
        assert!(parse_key(&[0u8; 33 + 2]).is_err());
    }

    #[test]
    fn config_errors_name_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("k7.key");
        let e = Keyring::load(&EncryptionConfig::new(7).key(7, &missing)).expect_err("missing");
        let msg = e.to_string();
        assert!(msg.contains("key 7") && msg.contains("k7.key"), "{msg}");

        let e = Keyring::load(&EncryptionConfig::new(2).key(1, &missing)).expect_err("inactive");
        assert!(e.to_string().contains("active_key 2"), "{e}");

        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, b"not a key").expect("write");
        let e = Keyring::load(&EncryptionConfig::new(3).key(3, &bad)).expect_err("bad");
        assert!(
            e.to_string().contains("key 3") && e.to_string().contains("9 bytes"),
            "{e}"
        );

        assert!(Keyring::load(&EncryptionConfig::new(0).key(0, &bad)).is_err());
    }

    #[test]
    fn generated_key_files_load_and_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k1.key");
        generate_key_file(&path).expect("generate");
        assert!(
            generate_key_file(&path).is_err(),
            "an existing key file was overwritten"
        );
        let ring = Keyring::load(&EncryptionConfig::new(1).key(1, &path)).expect("load");
        assert_eq!((ring.active_id(), ring.ids()), (1, vec![1]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
