//! Sink runners: take a batch in a channel transaction, hand it to the sink, commit on success;
//! on failure roll back (the events return to the head of the channel), count, back off
//! (exponentially, capped, reset on success) and retry. Nothing is dropped.
//!
//! A runner drives one *unit*: a sink alone, or a sink group whose processor picks the sink
//! for each batch ([`sink_group`](super::sink_group)).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::component::{Sink, SinkError};
use super::monitoring::{ComponentState, Heartbeat, SinkCounters};
use super::sink_group::Processor;
use crate::Channel;

/// How long a take waits for the first event before the runner looks at its stop signals.
pub const TAKE_WAIT: Duration = Duration::from_millis(250);
/// First pause after a failed batch.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest pause between retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Exponential back-off: `min`, doubling up to `max`; `reset` starts over.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A back-off from `min` to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }
    /// The pause to take now; doubles the next one.
    pub fn next_pause(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
    /// After a success.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// What one attempt to move a batch did.
#[derive(Debug)]
pub enum Status {
    /// A batch of this many events was delivered and committed.
    Delivered(usize),
    /// The channel had nothing within [`TAKE_WAIT`].
    Empty,
    /// The batch was rolled back.
    Failed(String),
}

/// One sink with its channel, batch size, counters and heartbeat.
pub struct SinkSlot {
    /// The sink's name.
    pub name: String,
    sink: Box<dyn Sink>,
    channel: Arc<dyn Channel>,
    batch_size: usize,
    /// Its counters.
    pub counters: Arc<SinkCounters>,
    /// Its heartbeat.
    pub heartbeat: Arc<Heartbeat>,
}

impl SinkSlot {
    /// A slot for `sink`, draining `channel` `batch_size` events at a time.
    pub fn new(
        name: &str,
        sink: Box<dyn Sink>,
        channel: Arc<dyn Channel>,
        batch_size: usize,
    ) -> Self {
        SinkSlot {
            name: name.to_string(),
            sink,
            channel,
            batch_size: batch_size.max(1),
            counters: Arc::default(),
            heartbeat: Arc::default(),
        }
    }

    /// True when the channel holds nothing (queued or taken).
    pub fn channel_empty(&self) -> bool {
        let s = self.channel.stats();
        s.size == 0 && s.in_flight == 0
    }

    /// Takes a batch in a transaction, delivers it, commits or rolls back.
    pub async fn process(&mut self) -> Status {
        let ch = self.channel.clone();
        let n = self.batch_size;
        // An empty take is rolled back, not committed: a commit would write (and sync) a
        // commit record for nothing every `TAKE_WAIT` while the channel is idle.
        let taken = tokio::task::spawn_blocking(move || {
            let mut tx = ch.transaction();
            match tx.take_batch(n, TAKE_WAIT) {
                Ok(batch) if batch.is_empty() => {
                    drop(tx);
                    Ok(None)
                }
                Ok(batch) => Ok(Some((tx, batch))),
                Err(e) => Err(e),
            }
        })
        .await;
        let (tx, batch) = match taken {
            Ok(Ok(Some(taken))) => taken,
            Ok(Ok(None)) => {
                self.counters.batch_empty.fetch_add(1, Ordering::Relaxed);
                return Status::Empty;
            }
            Ok(Err(e)) => return self.failed(format!("take failed: {e}"), false),
            Err(e) => return self.failed(format!("take task failed: {e}"), false),
        };
        let len = batch.len();
        self.counters
            .event_drain_attempt
            .fetch_add(len as u64, Ordering::Relaxed);
        match self.sink.deliver(&batch).await {
            Ok(()) => match tokio::task::spawn_blocking(move || tx.commit()).await {
                Ok(Ok(())) => {
                    let c = &self.counters;
                    c.event_drain_success
                        .fetch_add(len as u64, Ordering::Relaxed);
                    if len == self.batch_size {
                        c.batch_complete.fetch_add(1, Ordering::Relaxed);
                    } else {
                        c.batch_underflow.fetch_add(1, Ordering::Relaxed);
                    }
                    self.heartbeat.success();
                    Status::Delivered(len)
                }
                Ok(Err(e)) => self.failed(format!("commit of the take failed: {e}"), false),
                Err(e) => self.failed(format!("commit task failed: {e}"), false),
            },
            Err(e) => {
                let connection = matches!(e, SinkError::Connection(_));
                match tokio::task::spawn_blocking(move || tx.rollback()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(re)) => {
                        tracing::error!(sink = %self.name, error = %re, "rollback failed")
                    }
                    Err(re) => {
                        tracing::error!(sink = %self.name, error = %re, "rollback task failed")
                    }
                }
                self.failed(e.to_string(), connection)
            }
        }
    }

    fn failed(&self, msg: String, connection: bool) -> Status {
        self.counters
            .delivery_failures
            .fetch_add(1, Ordering::Relaxed);
        if connection {
            self.counters
                .connection_failures
                .fetch_add(1, Ordering::Relaxed);
        }
        self.heartbeat.failure(&msg);
        tracing::warn!(sink = %self.name, error = %msg, "batch failed; rolled back, will retry");
        Status::Failed(msg)
    }

    /// Stops the sink (closes its files or connections).
    pub async fn stop(&mut self) {
        if let Err(e) = self.sink.stop().await {
            tracing::error!(sink = %self.name, error = %e, "stopping the sink failed");
        }
        self.heartbeat.set_state(ComponentState::Stopped);
    }
}

/// Runs a unit until `stop` is cancelled (after its current batch), or, once `drain` is
/// cancelled, until its channels are empty.
pub async fn run(mut unit: Processor, stop: CancellationToken, drain: CancellationToken) {
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    while !stop.is_cancelled() {
        match unit.process().await {
            Status::Delivered(_) => backoff.reset(),
            Status::Empty => {
                if drain.is_cancelled() && unit.channels_empty() {
                    break;
                }
            }
            Status::Failed(_) => {
                let pause = backoff.next_pause();
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
    unit.stop().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let got: Vec<_> = (0..4).map(|_| b.next_pause().as_millis()).collect();
        assert_eq!(got, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_pause().as_millis(), 100);
    }
}
