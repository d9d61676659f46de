//! Counters and the [`ChannelStats`] snapshot (Flume's channel counters under clear names).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::replay::RecoveryReport;

/// Monotonic counters, updated without locks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) put_attempts: AtomicU64,
    pub(crate) put_successes: AtomicU64,
    pub(crate) put_errors: AtomicU64,
    pub(crate) take_attempts: AtomicU64,
    pub(crate) take_successes: AtomicU64,
    pub(crate) take_errors: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) rollbacks: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
    pub(crate) checkpoint_write_errors: AtomicU64,
    pub(crate) segments_deleted: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// A point-in-time view of a channel. Field names map to Flume's: `size` = ChannelSize,
/// `capacity` = ChannelCapacity, `fill_percent` = ChannelFillPercentage, `put_attempts` =
/// EventPutAttemptCount, `put_successes` = EventPutSuccessCount (events whose put committed),
/// `put_errors` = EventPutErrorCount, `take_*` likewise, `checkpoint_write_errors` =
/// CheckpointWriteErrorCount, `open` = Open, `poisoned.is_some()` = Unhealthy.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ChannelStats {
    /// "file" or "memory".
    pub kind: &'static str,
    /// Events queued and not taken.
    pub size: u64,
    /// Events taken by open transactions.
    pub in_flight: u64,
    /// Capacity in events.
    pub capacity: u64,
    /// Capacity in bytes, if set.
    pub capacity_bytes: Option<u64>,
    /// Event payload bytes queued or in flight.
    pub bytes: u64,
    /// Share of `capacity` in use (queued, in flight and uncommitted puts), 0 to 100.
    pub fill_percent: f64,
    /// `put` calls.
    pub put_attempts: u64,
    /// Events whose put transaction committed.
    pub put_successes: u64,
    /// `put` calls that failed, and events of put transactions whose commit failed.
    pub put_errors: u64,
    /// `take`/`take_batch` calls.
    pub take_attempts: u64,
    /// Events whose take transaction committed.
    pub take_successes: u64,
    /// Failed takes and events of take transactions whose commit failed.
    pub take_errors: u64,
    /// Transactions committed.
    pub commits: u64,
    /// Transactions rolled back (explicitly or by drop).
    pub rollbacks: u64,
    /// `fdatasync` calls on segments (compare with `commits` to see group commit).
    pub fsyncs: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Checkpoints that failed.
    pub checkpoint_write_errors: u64,
    /// When the last checkpoint finished.
    pub last_checkpoint: Option<SystemTime>,
    /// How long it took.
    pub last_checkpoint_duration: Option<Duration>,
    /// Segment files in the data directories.
    pub segments: u64,
    /// Segments deleted by garbage collection since open.
    pub segments_deleted: u64,
    /// True until `close()`.
    pub open: bool,
    /// Why the channel is poisoned, if it is.
    pub poisoned: Option<String>,
    /// What replay found at open.
    pub replay: Option<RecoveryReport>,
    /// Payload bytes (body and headers) of the events offered to compression since open: those
    /// at or above `compression_threshold`. The compression ratio is
    /// `compression_output_bytes / compression_input_bytes`.
    pub compression_input_bytes: u64,
    /// What those payloads take in the log: compressed, or as they were when compressing them
    /// did not save at least 10%.
    pub compression_output_bytes: u64,
    /// Events stored compressed since open.
    pub events_compressed: u64,
    /// CPU time spent compressing (puts) and decompressing (takes) since open.
    pub compression_cpu: Duration,
    /// Events stored encrypted since open.
    pub events_encrypted: u64,
    /// PutBatch records written since open (`batch_compression`): each holds several events
    /// compressed together, counted in `events_compressed`.
    pub batches_compressed: u64,
}
