//! The [`Channel`] trait and [`Transaction`], shared by the file and memory channels, so that
//! sources, sinks and the benchmark take either.

use std::fmt;
use std::time::Duration;

use crate::error::{PutError, Result};
use crate::event::Event;
use crate::stats::ChannelStats;

/// A transactional event channel.
pub trait Channel: Send + Sync {
    /// Begins a transaction.
    fn transaction(&self) -> Transaction;
    /// Counters and gauges.
    fn stats(&self) -> ChannelStats;
    /// Forces a checkpoint (a no-op for channels without one).
    fn checkpoint(&self) -> Result<()>;
    /// Closes the channel.
    fn close(&self) -> Result<()>;
}

/// What a channel implementation does for a [`Transaction`].
pub(crate) trait TxnOps: Send {
    fn put(&mut self, event: Event) -> std::result::Result<(), PutError>;
    /// Takes up to `max` events; with `wait`, waits that long for the first one.
    fn take(&mut self, max: usize, wait: Option<Duration>) -> Result<Vec<Event>>;
    fn commit(&mut self) -> Result<()>;
    fn rollback(&mut self) -> Result<()>;
    fn len(&self) -> usize;
}

/// A transaction on a channel: it either puts events or takes them, never both.
///
/// [`commit`](Transaction::commit) makes its work visible and (on a file channel) durable;
/// [`rollback`](Transaction::rollback) undoes it: puts vanish, taken events return to the head
/// of the queue in the order they were taken. Dropping an unfinished transaction rolls it back.
#[must_use = "a transaction does nothing until it is committed; dropping it rolls back"]
pub struct Transaction {
    ops: Box<dyn TxnOps>,
    finished: bool,
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("ops", &self.ops.len())
            .field("finished", &self.finished)
            .finish()
    }
}

impl Transaction {
    pub(crate) fn new(ops: Box<dyn TxnOps>) -> Self {
        Transaction {
            ops,
            finished: false,
        }
    }

    /// Puts an event. It becomes visible to takers when the transaction commits. On failure
    /// the event is handed back inside the [`PutError`], and the transaction stays usable.
    pub fn put(&mut self, event: Event) -> std::result::Result<(), PutError> {
        self.ops.put(event)
    }

    /// Takes the event at the head of the queue, or returns `None` at once when it is empty.
    ///
    /// # Damaged events
    /// A file channel checks each event's CRC as it reads it. A damaged one (bit rot in a
    /// segment replay did not check in full) makes the take return [`Error::Corrupt`] naming the
    /// segment and offset. With `recovery_mode = strict` the damaged event stays taken by this
    /// transaction and the events behind it stay queued: **commit** to drop it for good; a
    /// rollback (or dropping the transaction) puts it back at the head, where the next take
    /// finds it again. With `recovery_mode = skip` the take skips it instead.
    ///
    /// [`Error::Corrupt`]: crate::Error::Corrupt
    pub fn take(&mut self) -> Result<Option<Event>> {
        Ok(self.ops.take(1, None)?.pop())
    }

    /// Takes up to `max` events, waiting up to `timeout` for the first one; returns an empty
    /// vector when none arrived in time. A damaged event ends the batch with an error, as
    /// [`take`](Transaction::take) describes.
    pub fn take_batch(&mut self, max: usize, timeout: Duration) -> Result<Vec<Event>> {
        self.ops.take(max, Some(timeout))
    }

    /// Commits. For a file channel with `fsync = always`, returns only once every record the
    /// transaction wrote is durable.
    pub fn commit(mut self) -> Result<()> {
        self.finished = true;
        self.ops.commit()
    }

    /// Rolls back: puts are discarded, taken events return to the head of the queue in order.
    pub fn rollback(mut self) -> Result<()> {
        self.finished = true;
        self.ops.rollback()
    }

    /// Puts or takes done so far.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when nothing was put or taken yet.
    pub fn is_empty(&self) -> bool {
        self.ops.len() == 0
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.finished
            && let Err(e) = self.ops.rollback()
        {
            tracing::warn!(error = %e, "rollback of a dropped transaction failed");
        }
    }
}
