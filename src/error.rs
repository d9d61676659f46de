//! Errors. One [`Error`](enum@Error) for every channel operation; [`PutError`] hands the event back.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::event::Event;
use crate::format::DecodeError;

/// Everything a channel operation can fail with.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Stored bytes are damaged.
    #[error(
        "corrupt data in {} at offset {offset}: {source} (run `tidegate verify` on the channel's directories; `recovery_mode = skip` opens it anyway)",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the damaged structure.
        offset: u64,
        /// What is wrong.
        #[source]
        source: DecodeError,
    },
    /// An earlier write or sync failed; the channel refuses everything until it is reopened.
    #[error("channel is poisoned by an earlier I/O failure ({cause}); reopen it to recover")]
    Poisoned {
        /// The failure that poisoned it.
        cause: String,
    },
    /// The channel was closed.
    #[error("channel is closed")]
    Closed,
    /// Another process (or channel) holds the directory.
    #[error("directory {} is locked by another process or channel", dir.display())]
    Locked {
        /// The locked directory.
        dir: PathBuf,
    },
    /// A configuration value is not allowed.
    #[error("invalid configuration `{key}`: {message}")]
    Config {
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The event is larger than `max_event_size`.
    #[error("event of {size} bytes exceeds max_event_size of {limit} bytes")]
    EventTooLarge {
        /// Encoded size of the event (body and headers).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The transaction already holds `transaction_capacity` operations.
    #[error("transaction is full: transaction_capacity is {capacity} operations")]
    TransactionFull {
        /// The limit.
        capacity: usize,
    },
    /// A transaction that took events tried to put, or the other way round.
    #[error("a transaction holds puts or takes, not both: this one already has {has}")]
    MixedTransaction {
        /// What the transaction already holds ("puts" or "takes").
        has: &'static str,
    },
    /// The channel stayed full for the whole `keep_alive` wait.
    #[error("channel is full ({limit}) after waiting {waited:?}")]
    ChannelFull {
        /// Which limit was reached, with its value.
        limit: String,
        /// How long the put waited.
        waited: Duration,
    },
    /// Free space on a data or checkpoint directory's disk is below `minimum_required_space`.
    #[error(
        "free space on {} is {available} bytes, below minimum_required_space of {required} bytes: puts are refused, takes still work",
        dir.display()
    )]
    InsufficientSpace {
        /// The directory.
        dir: PathBuf,
        /// Bytes available.
        available: u64,
        /// The floor.
        required: u64,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// True for damaged stored data.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corrupt { .. })
    }

    /// A short stable label, for metrics.
    pub fn error_code(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::Corrupt { .. } => "corrupt",
            Error::Poisoned { .. } => "poisoned",
            Error::Closed => "closed",
            Error::Locked { .. } => "locked",
            Error::Config { .. } => "config",
            Error::EventTooLarge { .. } => "event_too_large",
            Error::TransactionFull { .. } => "transaction_full",
            Error::MixedTransaction { .. } => "mixed_transaction",
            Error::ChannelFull { .. } => "channel_full",
            Error::InsufficientSpace { .. } => "insufficient_space",
        }
    }
}

/// A failed put: the error and the event, handed back so nothing is lost.
pub struct PutError {
    /// Why the put failed.
    pub error: Error,
    /// The event that was not put.
    pub event: Event,
}

impl PutError {
    /// The event that was not put.
    pub fn into_event(self) -> Event {
        self.event
    }
}

impl fmt::Debug for PutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutError")
            .field("error", &self.error)
            .field("event_body_len", &self.event.body().len())
            .finish()
    }
}

impl fmt::Display for PutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for PutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<PutError> for Error {
    fn from(e: PutError) -> Self {
        e.error
    }
}

/// `Result<T, tidegate::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
