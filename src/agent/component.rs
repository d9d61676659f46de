//! What the runtime and the components agree on.
//!
//! A [`Source`] turns outside input into [`Event`]s and hands them to its [`SourceOutput`]
//! (interceptors, then the channel selector, then one transaction per channel); a [`Sink`]
//! receives batches the runtime took from a channel in a transaction, and the runtime commits
//! that transaction only once the sink said the batch is downstream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::Event;

/// A boxed, sendable future (what the component traits return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a batch handed to the channels was not accepted (optional-channel failures are not
/// errors).
///
/// The batch is put into every required channel's transaction first, and a refused put
/// (full, too large, no channel) commits nothing anywhere. The commits then run one channel
/// after the other: if a later channel's commit fails, the channels committed before it keep
/// the batch, so a retry may duplicate it there (at-least-once, as in Flume).
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// A required channel has no room (HTTP sources answer 503).
    #[error("channel {channel} is full")]
    Full {
        /// The channel's name.
        channel: String,
    },
    /// An event is larger than a channel accepts.
    #[error("event too large for channel {channel}: {detail}")]
    TooLarge {
        /// The channel's name.
        channel: String,
        /// What the channel said.
        detail: String,
    },
    /// The selector routes an event to no required channel (an unmapped header value and no
    /// `default`); nothing was put anywhere. A client error, like [`Self::TooLarge`].
    #[error("no required channel for an event: {detail}")]
    NoChannel {
        /// Which event, and why.
        detail: String,
    },
    /// The agent is stopping and accepts nothing more.
    #[error("the agent is shutting down")]
    ShuttingDown,
    /// Any other channel error (poisoned, closed, I/O).
    #[error("channel {channel}: {source}")]
    Channel {
        /// The channel's name.
        channel: String,
        /// The channel's error.
        #[source]
        source: crate::Error,
    },
}

impl DeliverError {
    /// True when the batch itself is at fault (an event too large, an event no channel takes):
    /// retrying it unchanged fails again, and the agent is not unhealthy for it.
    pub fn is_client_error(&self) -> bool {
        match self {
            DeliverError::TooLarge { .. } | DeliverError::NoChannel { .. } => true,
            DeliverError::Full { .. } | DeliverError::ShuttingDown => false,
            DeliverError::Channel { source, .. } => matches!(
                source,
                crate::Error::EventTooLarge { .. } | crate::Error::TransactionFull { .. }
            ),
        }
    }
}

/// How a source hands events to its channels: interceptors, then the selector, then one
/// transaction per channel. `deliver` returns Ok only after every required channel committed
/// (durably, for a file channel with fsync = always). Runs channel calls off the async workers.
pub trait Deliver: Send + Sync {
    /// Delivers one batch; see the trait docs.
    fn deliver(&self, events: Vec<Event>) -> BoxFuture<'_, Result<(), DeliverError>>;
}

/// A source's handle on its channels.
#[derive(Clone)]
pub struct SourceOutput(pub Arc<dyn Deliver>);

impl SourceOutput {
    /// Delivers one batch to the source's channels; Ok once every required channel committed.
    pub async fn deliver(&self, events: Vec<Event>) -> Result<(), DeliverError> {
        self.0.deliver(events).await
    }
}

/// A source's counters (Flume's source counter names, in snake_case).
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Events the source read or was sent.
    pub received: AtomicU64,
    /// Events committed to the channels.
    pub accepted: AtomicU64,
    /// Events refused (malformed, too large, channel full).
    pub rejected: AtomicU64,
    /// Batches committed to the channels.
    pub append_batches: AtomicU64,
}

/// Everything a running source gets from the runtime.
pub struct SourceContext {
    /// The source's name in the config.
    pub name: String,
    /// Where its events go.
    pub output: SourceOutput,
    /// Cancelled when the source must stop.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The source's counters (the runtime reads them for metrics).
    pub counters: Arc<SourceCounters>,
}

/// A source of events.
pub trait Source: Send {
    /// Runs until `ctx.shutdown` is cancelled (or, for finite sources like seq/stdin, until done);
    /// stops accepting, finishes in-flight deliveries, returns.
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), ComponentError>>;
}

/// Why a sink could not deliver a batch (the runner rolls back and retries later).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Downstream could not be reached.
    #[error("connection failed: {0}")]
    Connection(String),
    /// Downstream was reached but did not accept the batch.
    #[error("delivery failed: {0}")]
    Delivery(String),
    /// A local I/O error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A sink: delivers batches downstream.
pub trait Sink: Send {
    /// Delivers one batch downstream; returns Ok only once downstream has it (durably, for
    /// file_roll: written and fdatasync'ed). The runner took `batch` in a channel transaction;
    /// it commits on Ok and rolls back (then backs off and retries) on Err.
    fn deliver<'a>(&'a mut self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>>;
    /// Called once when the sink stops (close/finish files). Default: nothing.
    fn stop(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }
}

/// An interceptor: changes, drops or keeps events before the selector sees them.
pub trait Interceptor: Send + Sync {
    /// May change, drop or keep events; order of kept events is preserved.
    fn intercept(&self, events: Vec<Event>) -> Vec<Event>;
}

/// Why a component could not be built or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// Its configuration is wrong.
    #[error("{0}")]
    Config(String),
    /// An I/O error (binding a socket, opening a file).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}
