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
//! The command line names a channel with `--checkpoint-dir DIR --data-dirs D1,D2`
//! ([`ChannelDirs`]).

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

use crate::config::{FileChannelConfig, RecoveryMode};
use crate::error::{Error, Result};
use crate::io::{DirLock, FileSystem, StdFs};
use crate::replay::{self, Recovered};

/// The directories of one channel, as the offline tools name it.
#[derive(Debug, Clone)]
pub struct ChannelDirs {
    /// The checkpoint directory.
    pub checkpoint_dir: PathBuf,
    /// The data directories, in the channel's order.
    pub data_dirs: Vec<PathBuf>,
    /// The file system (the real one unless a test swaps it).
    pub file_system: Arc<dyn FileSystem>,
}

impl ChannelDirs {
    /// A channel on the real file system.
    pub fn new(checkpoint_dir: impl Into<PathBuf>, data_dirs: Vec<impl Into<PathBuf>>) -> Self {
        ChannelDirs {
            checkpoint_dir: checkpoint_dir.into(),
            data_dirs: data_dirs.into_iter().map(Into::into).collect(),
            file_system: Arc::new(StdFs),
        }
    }

    /// The same directories on another file system.
    pub fn file_system(mut self, fs: Arc<dyn FileSystem>) -> Self {
        self.file_system = fs;
        self
    }

    /// The directories of a channel configuration.
    pub fn of(cfg: &FileChannelConfig) -> Self {
        ChannelDirs {
            checkpoint_dir: cfg.checkpoint_dir.clone(),
            data_dirs: cfg.data_dirs.clone(),
            file_system: cfg.file_system.clone(),
        }
    }
}

/// An offline session: the directories, locked.
pub(crate) struct Session {
    pub(crate) dirs: ChannelDirs,
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
        Ok(Session {
            dirs: dirs.clone(),
            _locks: locks,
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
