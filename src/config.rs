//! [`FileChannelConfig`]: every option of the file channel, with Flume's meanings and defaults.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::at_rest::{Compression, DEFAULT_COMPRESSION_THRESHOLD, EncryptionConfig};
use crate::error::{Error, Result};
use crate::io::{FileSystem, StdFs};
use crate::replay::ReplayProgress;

/// A replay progress callback.
pub type ProgressCallback = Arc<dyn Fn(&ReplayProgress) + Send + Sync>;

/// When a commit's records reach the disk.
///
/// | policy | commit returns after | a process crash loses | a power loss loses |
/// |---|---|---|---|
/// | `Always` | `fdatasync` of every byte it wrote | nothing acknowledged | nothing acknowledged |
/// | `Interval(d)` | the write (page cache) | nothing acknowledged | commits of the last `d` (plus one sync's duration) |
/// | `Never` | the write (page cache) | nothing acknowledged | everything since the last checkpoint or close; for benchmarking only |
///
/// Concurrent committers share each `fdatasync` (group commit). Checkpoints always sync the log
/// up to the position they cover first, under every policy, so a checkpoint never refers to
/// bytes that are not on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsyncPolicy {
    /// Durable on return (the default).
    Always,
    /// A background thread syncs every interval.
    Interval(Duration),
    /// Never sync on commit (benchmarking only).
    Never,
}

/// What replay does with a damaged record that is not a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RecoveryMode {
    /// Refuse to open; the error names the segment and offset (the default).
    #[default]
    Strict,
    /// Skip the damaged record (or segment), count and log it, keep every other event.
    Skip,
}

/// Options of a [`FileChannel`](crate::FileChannel). Build with [`FileChannelConfig::new`] and
/// the setters; every field documents its default and limits.
#[derive(Clone)]
pub struct FileChannelConfig {
    pub(crate) checkpoint_dir: PathBuf,
    pub(crate) data_dirs: Vec<PathBuf>,
    pub(crate) capacity: u64,
    pub(crate) capacity_bytes: Option<u64>,
    pub(crate) transaction_capacity: usize,
    pub(crate) keep_alive: Duration,
    pub(crate) max_event_size: u64,
    pub(crate) max_segment_size: u64,
    pub(crate) recycle_segments: u32,
    pub(crate) minimum_required_space: u64,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) checkpoint_on_close: bool,
    pub(crate) checkpoint_write_rate: Option<u64>,
    pub(crate) fsync: FsyncPolicy,
    pub(crate) recovery_mode: RecoveryMode,
    pub(crate) file_system: Arc<dyn FileSystem>,
    pub(crate) replay_progress: Option<ProgressCallback>,
    pub(crate) encryption: Option<EncryptionConfig>,
    pub(crate) compression: Compression,
    pub(crate) compression_threshold: u64,
    pub(crate) batch_compression: bool,
}

impl fmt::Debug for FileChannelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileChannelConfig")
            .field("checkpoint_dir", &self.checkpoint_dir)
            .field("data_dirs", &self.data_dirs)
            .field("capacity", &self.capacity)
            .field("capacity_bytes", &self.capacity_bytes)
            .field("transaction_capacity", &self.transaction_capacity)
            .field("keep_alive", &self.keep_alive)
            .field("max_event_size", &self.max_event_size)
            .field("max_segment_size", &self.max_segment_size)
            .field("recycle_segments", &self.recycle_segments)
            .field("minimum_required_space", &self.minimum_required_space)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("checkpoint_on_close", &self.checkpoint_on_close)
            .field("checkpoint_write_rate", &self.checkpoint_write_rate)
            .field("fsync", &self.fsync)
            .field("recovery_mode", &self.recovery_mode)
            .field("file_system", &self.file_system)
            .field("encryption", &self.encryption)
            .field("compression", &self.compression)
            .field("compression_threshold", &self.compression_threshold)
            .field("batch_compression", &self.batch_compression)
            .finish_non_exhaustive()
    }
}

/// Default `capacity`: 1,000,000 events (Flume's).
pub const DEFAULT_CAPACITY: u64 = 1_000_000;
/// Default `transaction_capacity`: 10,000 operations (Flume's).
pub const DEFAULT_TRANSACTION_CAPACITY: usize = 10_000;
/// Default `keep_alive`: 3 s (Flume's).
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(3);
/// Default `recycle_segments`: 2 collected segment files kept per data directory for reuse.
pub const DEFAULT_RECYCLE_SEGMENTS: u32 = 2;
/// Default `max_event_size`: 32 MiB.
pub const DEFAULT_MAX_EVENT_SIZE: u64 = 32 << 20;
/// Default `batch_compression`: on (compression, when configured, works per put transaction).
pub const DEFAULT_BATCH_COMPRESSION: bool = true;
/// Largest `max_segment_size` accepted: 2^48 bytes (a pointer's offset field; DESIGN.md §3.5).
pub const MAX_SEGMENT_SIZE: u64 = 1 << 48;
/// Default `max_segment_size`: 128 MiB (see DESIGN.md, "Segment size").
pub const DEFAULT_MAX_SEGMENT_SIZE: u64 = 128 << 20;
/// Smallest `max_segment_size` accepted: 4 KiB (tiny segments are for tests).
pub const MIN_SEGMENT_SIZE: u64 = 4096;
/// Default `minimum_required_space`: 500 MiB (Flume's).
pub const DEFAULT_MINIMUM_REQUIRED_SPACE: u64 = 500 << 20;
/// Smallest `minimum_required_space` accepted: 1 MiB (Flume's floor).
pub const MIN_MINIMUM_REQUIRED_SPACE: u64 = 1 << 20;
/// Default `checkpoint_interval`: 30 s (Flume's).
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(30);
/// Smallest `checkpoint_interval` accepted: 1 s (Flume's floor).
pub const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Default `checkpoint_write_rate`: 16 MiB/s. A checkpoint of the default capacity (1,000,000
/// queued events) is about 4 MB: written in a quarter of a second, a small share of any disk's
/// bandwidth, in pieces that never queue a large flush in front of the commits' (see
/// docs/benchmarks.md, "checkpoint latency").
pub const DEFAULT_CHECKPOINT_WRITE_RATE: u64 = 16 << 20;
/// Smallest `checkpoint_write_rate` accepted: 1 MiB/s.
pub const MIN_CHECKPOINT_WRITE_RATE: u64 = 1 << 20;

impl FileChannelConfig {
    /// A configuration with every default: the checkpoint in `checkpoint_dir`, the log spread over
    /// `data_dirs` (one or more; one per disk, or two per disk, as with Flume).
    pub fn new(checkpoint_dir: impl Into<PathBuf>, data_dirs: Vec<impl Into<PathBuf>>) -> Self {
        FileChannelConfig {
            checkpoint_dir: checkpoint_dir.into(),
            data_dirs: data_dirs.into_iter().map(Into::into).collect(),
            capacity: DEFAULT_CAPACITY,
            capacity_bytes: None,
            transaction_capacity: DEFAULT_TRANSACTION_CAPACITY,
            keep_alive: DEFAULT_KEEP_ALIVE,
            max_event_size: DEFAULT_MAX_EVENT_SIZE,
            max_segment_size: DEFAULT_MAX_SEGMENT_SIZE,
            recycle_segments: DEFAULT_RECYCLE_SEGMENTS,
            minimum_required_space: DEFAULT_MINIMUM_REQUIRED_SPACE,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            checkpoint_on_close: true,
            checkpoint_write_rate: Some(DEFAULT_CHECKPOINT_WRITE_RATE),
            fsync: FsyncPolicy::Always,
            recovery_mode: RecoveryMode::Strict,
            file_system: Arc::new(StdFs),
            replay_progress: None,
            encryption: None,
            compression: Compression::None,
            compression_threshold: DEFAULT_COMPRESSION_THRESHOLD,
            batch_compression: DEFAULT_BATCH_COMPRESSION,
        }
    }

    /// Most events the channel holds (queued plus taken but not committed). Default 1,000,000;
    /// at least 1.
    #[must_use]
    pub fn capacity(mut self, events: u64) -> Self {
        self.capacity = events;
        self
    }
    /// Most bytes of event data (bodies and headers) the channel holds. Default: no limit.
    #[must_use]
    pub fn capacity_bytes(mut self, bytes: Option<u64>) -> Self {
        self.capacity_bytes = bytes;
        self
    }
    /// Most puts or takes in one transaction. Default 10,000; at least 1.
    #[must_use]
    pub fn transaction_capacity(mut self, ops: usize) -> Self {
        self.transaction_capacity = ops;
        self
    }
    /// How long a put waits for capacity before `ChannelFull`. Default 3 s.
    #[must_use]
    pub fn keep_alive(mut self, d: Duration) -> Self {
        self.keep_alive = d;
        self
    }
    /// Largest event accepted (body plus encoded headers). Default 32 MiB; it must fit in a
    /// segment.
    #[must_use]
    pub fn max_event_size(mut self, bytes: u64) -> Self {
        self.max_event_size = bytes;
        self
    }
    /// Size of each segment file (preallocated). Default 128 MiB; at least 4 KiB, and large
    /// enough for one event of `max_event_size`.
    #[must_use]
    pub fn max_segment_size(mut self, bytes: u64) -> Self {
        self.max_segment_size = bytes;
        self
    }
    /// How many collected segment files each data directory keeps to reuse as new segments
    /// (renamed `segment-N.log.free`). A reused file is not zeroed first, so its next use
    /// writes the log's bytes once instead of twice (DESIGN.md §4.6). Default 2; 0 deletes
    /// collected segments and zero-fills every new one. Kept files hold disk space: up to this
    /// many times `max_segment_size` per directory.
    #[must_use]
    pub fn recycle_segments(mut self, files: u32) -> Self {
        self.recycle_segments = files;
        self
    }
    /// Free-space floor: below it puts are refused, takes go on. Default 500 MiB; at least 1 MiB.
    #[must_use]
    pub fn minimum_required_space(mut self, bytes: u64) -> Self {
        self.minimum_required_space = bytes;
        self
    }
    /// Time between background checkpoints. Default 30 s; at least 1 s.
    #[must_use]
    pub fn checkpoint_interval(mut self, d: Duration) -> Self {
        self.checkpoint_interval = d;
        self
    }
    /// Write a checkpoint on `close()`. Default true.
    #[must_use]
    pub fn checkpoint_on_close(mut self, yes: bool) -> Self {
        self.checkpoint_on_close = yes;
        self
    }
    /// How fast a checkpoint's file is written, in bytes per second, or `None` for as fast as
    /// the disk takes it. Default 16 MiB/s; at least 1 MiB/s. Pacing applies to the periodic
    /// checkpoints and to [`FileChannel::checkpoint`](crate::FileChannel::checkpoint), not to
    /// the one `close()` writes. The file is written in 256 KiB pieces, each handed to the
    /// disk as it is written, so that no checkpoint puts a large flush in the disk's queue in
    /// front of the commits' `fdatasync`s.
    #[must_use]
    pub fn checkpoint_write_rate(mut self, bytes_per_sec: Option<u64>) -> Self {
        self.checkpoint_write_rate = bytes_per_sec;
        self
    }
    /// When commits are synced. Default [`FsyncPolicy::Always`].
    #[must_use]
    pub fn fsync(mut self, policy: FsyncPolicy) -> Self {
        self.fsync = policy;
        self
    }
    /// What replay does with damaged records. Default [`RecoveryMode::Strict`].
    #[must_use]
    pub fn recovery_mode(mut self, mode: RecoveryMode) -> Self {
        self.recovery_mode = mode;
        self
    }
    /// The storage to use. Default: the real file system.
    #[must_use]
    pub fn file_system(mut self, fs: Arc<dyn FileSystem>) -> Self {
        self.file_system = fs;
        self
    }
    /// A callback told of replay progress (once per segment scanned).
    #[must_use]
    pub fn on_replay_progress(
        mut self,
        f: impl Fn(&ReplayProgress) + Send + Sync + 'static,
    ) -> Self {
        self.replay_progress = Some(Arc::new(f));
        self
    }

    /// Encrypt event data in the log with AES-256-GCM under the configured keys (see
    /// [`EncryptionConfig`] and docs/security.md). Default: no encryption. Events written
    /// before encryption was turned on stay readable; once it is on, every key that a queued
    /// event was written with must stay listed until the event is taken (replay refuses to open
    /// otherwise, naming the key id and segment).
    #[must_use]
    pub fn encryption(mut self, enc: EncryptionConfig) -> Self {
        self.encryption = Some(enc);
        self
    }
    /// How event payloads are compressed in the log. Default [`Compression::None`]; `Zstd` needs
    /// the `zstd` cargo feature. Reading handles every codec regardless of this setting.
    #[must_use]
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }
    /// Payloads (an event's body and headers) smaller than this are never compressed. Default
    /// 256 bytes. A payload is stored compressed only when that saves at least 10% of it.
    #[must_use]
    pub fn compression_threshold(mut self, bytes: u64) -> Self {
        self.compression_threshold = bytes;
        self
    }

    /// On (the default): compress and/or encrypt the events of a put transaction together, as
    /// PutBatch records of up to 1 MiB of events each (events of up to 64 KiB; larger ones are
    /// transformed on their own), instead of event by event: small events (log lines) compress
    /// several times better together, and encryption seals once per batch. A compressed batch
    /// is kept only if it saves at least 10%; otherwise the events are written as Put records.
    /// `compression_threshold` then applies to the batch's total. Segments written with this on
    /// get format version 2, which older binaries refuse to open (DESIGN.md §3.5). Off: each
    /// event is transformed on its own (segment format version 1). No effect without
    /// compression or encryption.
    #[must_use]
    pub fn batch_compression(mut self, on: bool) -> Self {
        self.batch_compression = on;
        self
    }

    /// The checkpoint directory.
    pub fn checkpoint_dir(&self) -> &Path {
        &self.checkpoint_dir
    }
    /// The data directories.
    pub fn data_dirs(&self) -> &[PathBuf] {
        &self.data_dirs
    }

    /// Room in a segment for records.
    pub(crate) fn segment_room(&self) -> u64 {
        self.max_segment_size
            .saturating_sub(crate::format::segment_header::LEN as u64)
    }

    /// Bytes encryption adds to each stored event (its nonce and tag), 0 without encryption.
    pub(crate) fn encryption_overhead(&self) -> u64 {
        if self.encryption.is_some() {
            crate::at_rest::ENCRYPTION_OVERHEAD as u64
        } else {
            0
        }
    }

    /// Checks every limit; the error names the key.
    pub fn validate(&self) -> Result<()> {
        fn bad(key: &'static str, message: String) -> Result<()> {
            Err(Error::Config { key, message })
        }
        if self.data_dirs.is_empty() {
            return bad("data_dirs", "at least one data directory is needed".into());
        }
        for (i, d) in self.data_dirs.iter().enumerate() {
            if self.data_dirs[..i].contains(d) || d == &self.checkpoint_dir {
                return bad(
                    "data_dirs",
                    format!("{} is listed twice (or is the checkpoint dir)", d.display()),
                );
            }
        }
        if self.capacity == 0 {
            return bad("capacity", "must be at least 1".into());
        }
        if self.capacity_bytes == Some(0) {
            return bad("capacity_bytes", "must be at least 1 when set".into());
        }
        if self.transaction_capacity == 0 {
            return bad("transaction_capacity", "must be at least 1".into());
        }
        if self.max_segment_size < MIN_SEGMENT_SIZE {
            return bad(
                "max_segment_size",
                format!(
                    "{} is below the minimum of {MIN_SEGMENT_SIZE}",
                    self.max_segment_size
                ),
            );
        }
        if self.max_segment_size > MAX_SEGMENT_SIZE {
            return bad(
                "max_segment_size",
                format!(
                    "{} is above the maximum of {MAX_SEGMENT_SIZE}",
                    self.max_segment_size
                ),
            );
        }
        if self.max_event_size == 0 || self.max_event_size > u64::from(u32::MAX) - 64 {
            return bad(
                "max_event_size",
                format!("{} must be between 1 and 4 GiB", self.max_event_size),
            );
        }
        let overhead = crate::format::record::HEADER_LEN as u64 + self.encryption_overhead();
        let needed = self.max_event_size + overhead;
        if needed > self.segment_room() {
            return bad(
                "max_segment_size",
                format!(
                    "{} leaves {} bytes for records, too little for one event of max_event_size {} plus its {overhead}-byte header (and nonce and tag, if encrypted)",
                    self.max_segment_size,
                    self.segment_room(),
                    self.max_event_size,
                ),
            );
        }
        if self.minimum_required_space < MIN_MINIMUM_REQUIRED_SPACE {
            return bad(
                "minimum_required_space",
                format!(
                    "{} is below the floor of {MIN_MINIMUM_REQUIRED_SPACE} bytes",
                    self.minimum_required_space
                ),
            );
        }
        if self.checkpoint_interval < MIN_CHECKPOINT_INTERVAL {
            return bad(
                "checkpoint_interval",
                format!("{:?} is below the minimum of 1s", self.checkpoint_interval),
            );
        }
        if let Some(rate) = self.checkpoint_write_rate
            && rate < MIN_CHECKPOINT_WRITE_RATE
        {
            return bad(
                "checkpoint_write_rate",
                format!(
                    "{rate} bytes/s is below the minimum of {MIN_CHECKPOINT_WRITE_RATE} (1 MiB/s); leave it unset for no limit"
                ),
            );
        }
        if !self.compression.is_available() {
            return bad(
                "compression",
                format!(
                    "{} is not built in: build tidegate with the `{}` cargo feature",
                    self.compression.name(),
                    self.compression.name()
                ),
            );
        }
        if let Some(enc) = &self.encryption {
            enc.validate()?;
        }
        if let FsyncPolicy::Interval(d) = self.fsync
            && d.is_zero()
        {
            return bad("fsync", "interval must be above zero".into());
        }
        Ok(())
    }
}
