//! The offline tools: [`verify()`], [`repair()`] and [`inspect()`] a channel that no process has
//! open.
//!
//! Each one starts a session: it checks that the directories exist and takes the exclusive
//! lock of the checkpoint directory and of every data directory, so it refuses to run against a
//! channel that is open (the error is [`Error::Locked`], naming the directory). Everything they
//! report comes from the same code an open runs:
//!
//! - [`mod@scan`] walks every record of every segment with replay's own record check
//!   (`replay::read_record`, every payload CRC included: header, bounds, CRCs, increasing
//!   sequence numbers) and its forward
//!   search for the next valid record, and lists each problem with its file and offset;
//! - the session's `replay` runs replay itself on a read-only view of the directories
//!   (`overlay::ReadOnlyFs`): whatever replay would write (zeroing a torn tail) stays in
//!   memory, so `verify` and `inspect` say exactly what an open would restore and change
//!   nothing on disk.
//!
//! `repair` is the only tool that writes; its crash-safety argument is in [`mod@repair`] and in
//! DESIGN.md ("Repair").
//!
//! The command line names a channel with `--checkpoint-dir DIR --data-dirs D1,D2`, or with
//! `--config agent.toml --channel c1` ([`ChannelDirs`], [`ChannelDirs::of`]).
//!
//! # Encrypted channels
//! Record headers, CRCs and the checkpoint are never encrypted, so every check of the log and
//! everything replay restores needs no key: `verify`, `repair` and `inspect` run on an encrypted
//! channel as they are. Only what decodes an event needs its key ([`ChannelDirs::encryption`]):
//! `verify` given keys also authenticates every encrypted Put record (the GCM tag proves the event
//! and its header are the ones written), and `inspect --dump` shows the event headers. Without a
//! key, `verify` counts the encrypted records and says their tags were not checked, and the dump
//! says which key a record needs.

pub mod inspect;
mod overlay;
pub mod repair;
pub mod scan;
pub mod verify;

use std::path::PathBuf;
use std::sync::Arc;

pub use inspect::{InspectReport, inspect};
pub use repair::{RepairReport, repair};
pub use scan::{Problem, ProblemKind, SegmentInfo};
pub use verify::{VerifyReport, verify};

use crate::at_rest::{EncryptionConfig, Keyring, PayloadCodec};
use crate::config::{DEFAULT_MAX_EVENT_SIZE, FileChannelConfig, RecoveryMode};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::format::DecodeError;
use crate::format::record::{self, HEADER_LEN, RecordHeader};
use crate::io::{DirLock, FileSystem, StdFs};
use crate::replay::{self, Recovered};
use crate::segment::Segment;

/// The directories of one channel, as the offline tools name it.
#[derive(Debug, Clone)]
pub struct ChannelDirs {
    /// The checkpoint directory.
    pub checkpoint_dir: PathBuf,
    /// The data directories, in the channel's order.
    pub data_dirs: Vec<PathBuf>,
    /// The file system (the real one unless a test swaps it).
    pub file_system: Arc<dyn FileSystem>,
    /// The channel's keys, to decode encrypted events (nothing else needs them).
    pub encryption: Option<EncryptionConfig>,
    /// The recovery mode the channel is configured with (`strict` unless set).
    pub recovery_mode: RecoveryMode,
    /// The channel's `max_event_size`: the most a compressed event may decompress to.
    pub max_event_size: u64,
}

impl ChannelDirs {
    /// A channel on the real file system.
    pub fn new(checkpoint_dir: impl Into<PathBuf>, data_dirs: Vec<impl Into<PathBuf>>) -> Self {
        ChannelDirs {
            checkpoint_dir: checkpoint_dir.into(),
            data_dirs: data_dirs.into_iter().map(Into::into).collect(),
            file_system: Arc::new(StdFs),
            encryption: None,
            recovery_mode: RecoveryMode::Strict,
            max_event_size: DEFAULT_MAX_EVENT_SIZE,
        }
    }

    /// The keys that decode the channel's encrypted events.
    pub fn encryption(mut self, enc: EncryptionConfig) -> Self {
        self.encryption = Some(enc);
        self
    }

    /// The same directories on another file system.
    pub fn file_system(mut self, fs: Arc<dyn FileSystem>) -> Self {
        self.file_system = fs;
        self
    }

    /// The channel of a configuration: its directories, file system, keys, recovery mode and
    /// `max_event_size`.
    pub fn of(cfg: &FileChannelConfig) -> Self {
        ChannelDirs {
            checkpoint_dir: cfg.checkpoint_dir.clone(),
            data_dirs: cfg.data_dirs.clone(),
            file_system: cfg.file_system.clone(),
            encryption: cfg.encryption.clone(),
            recovery_mode: cfg.recovery_mode,
            max_event_size: cfg.max_event_size,
        }
    }
}

/// An offline session: the directories, locked, and the codec that decodes their events.
pub(crate) struct Session {
    pub(crate) dirs: ChannelDirs,
    /// Reads every stored form it has keys for (compressed payloads need none).
    pub(crate) codec: PayloadCodec,
    _locks: Vec<DirLock>,
}

impl Session {
    /// Checks that every directory exists and locks them all.
    pub(crate) fn open(dirs: &ChannelDirs) -> Result<Session> {
        let fs = &*dirs.file_system;
        if dirs.data_dirs.is_empty() {
            return Err(Error::Config {
                key: "data_dirs",
                message: "name at least one data directory".into(),
            });
        }
        let mut locks = Vec::new();
        for d in std::iter::once(&dirs.checkpoint_dir).chain(&dirs.data_dirs) {
            if !fs.dir_exists(d) {
                return Err(Error::io(
                    "opening channel directory",
                    d,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no such directory (the offline tools never create one)",
                    ),
                ));
            }
            locks.push(fs.lock_dir(d).map_err(|e| {
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    Error::Locked { dir: d.clone() }
                } else {
                    Error::io("locking directory", d, e)
                }
            })?);
        }
        let keyring = match &dirs.encryption {
            Some(enc) => Some(Arc::new(Keyring::load(enc)?)),
            None => None,
        };
        Ok(Session {
            dirs: dirs.clone(),
            codec: PayloadCodec::plain(keyring)?,
            _locks: locks,
        })
    }

    /// True when the session was given keys.
    pub(crate) fn has_keys(&self) -> bool {
        self.codec.keyring().is_some()
    }

    /// The event of the valid Put record `h` at `offset` of `seg` (its CRCs checked by the
    /// scan), decrypted and decompressed as its header says.
    pub(crate) fn read_event(
        &self,
        seg: &Segment,
        offset: u64,
        h: &RecordHeader,
    ) -> std::result::Result<Event, DecodeError> {
        visit_payload(seg, offset, h, |p| {
            record::decode_put_stored(h, p, &self.codec, self.dirs.max_event_size)
        })
    }

    /// The decoded PutBatch record `h` at `offset` of `seg` (its CRCs checked by the scan):
    /// decrypted, decompressed and split into its events.
    pub(crate) fn read_batch(
        &self,
        seg: &Segment,
        offset: u64,
        h: &RecordHeader,
    ) -> std::result::Result<record::DecodedBatch, DecodeError> {
        visit_payload(seg, offset, h, |p| {
            record::decode_batch_stored(h, p, &self.codec)
        })
    }

    /// A configuration for these directories on `fs`.
    pub(crate) fn config(&self, fs: Arc<dyn FileSystem>, mode: RecoveryMode) -> FileChannelConfig {
        FileChannelConfig::new(
            self.dirs.checkpoint_dir.clone(),
            self.dirs.data_dirs.clone(),
        )
        .recovery_mode(mode)
        .file_system(fs)
    }

    /// A read-only view of the directories: reads go to the disk, writes stay in memory.
    pub(crate) fn view(&self) -> Arc<dyn FileSystem> {
        Arc::new(overlay::ReadOnlyFs::new(self.dirs.file_system.clone()))
    }

    /// Runs replay, as an open in `mode` would, on a fresh read-only view: what it returns is
    /// what the channel would hold, and nothing on disk changes.
    /// Replay's own log lines are silenced here (they would say "zeroed" of bytes that only
    /// the view changed); the tools report what replay found themselves.
    pub(crate) fn replay(&self, mode: RecoveryMode) -> Result<Recovered> {
        self.replay_on(self.view(), mode)
    }

    /// Like [`Session::replay`], on a view the caller prepared (e.g. with some files hidden).
    pub(crate) fn replay_on(
        &self,
        view: Arc<dyn FileSystem>,
        mode: RecoveryMode,
    ) -> Result<Recovered> {
        let cfg = self.config(view, mode);
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            replay::recover(&cfg).map(|(rec, _lock)| rec)
        })
    }
}

/// Decodes the payload of record `h` at `offset` of `seg` with `decode`, reading it through the
/// segment's map; a record past the mapped end is reported as truncated.
fn visit_payload<T>(
    seg: &Segment,
    offset: u64,
    h: &RecordHeader,
    mut decode: impl FnMut(&[u8]) -> std::result::Result<T, DecodeError>,
) -> std::result::Result<T, DecodeError> {
    let mut out = Err(DecodeError::Truncated {
        needed: u64::from(h.len),
        available: 0,
    });
    let visited = seg
        .map
        .visit(offset + HEADER_LEN as u64, h.len as usize, &mut |p| {
            out = decode(p);
        });
    if visited.is_err() {
        return Err(DecodeError::Truncated {
            needed: offset + h.record_len(),
            available: seg.map.len(),
        });
    }
    out
}
