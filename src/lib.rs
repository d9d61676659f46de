//! # tidegate
//!
//! A durable event channel on a write-ahead log with checkpoints: Apache Flume's FileChannel,
//! done right. Producers put events in transactions; a commit returns once the events are on
//! disk; consumers take events in transactions, and a take that is rolled back, dropped, or
//! interrupted by a crash hands its events back to the head of the queue, in order.
//!
//! ```
//! use std::time::Duration;
//! use tidegate::{Event, FileChannel, FileChannelConfig};
//!
//! # fn main() -> tidegate::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let (checkpoint_dir, data_dir) = (dir.path().join("ckpt"), dir.path().join("data"));
//! let cfg = FileChannelConfig::new(checkpoint_dir, vec![data_dir]).minimum_required_space(1 << 20);
//! let ch = FileChannel::open(cfg)?; // replays whatever a previous run left
//!
//! let mut tx = ch.transaction();
//! tx.put(Event::new(b"body".to_vec()).with_header("host", "a"))?;
//! tx.commit()?; // durable when it returns
//!
//! let mut tx = ch.transaction();
//! let ev = tx.take()?.expect("one event");
//! assert_eq!(ev.body(), b"body");
//! tx.commit()?;
//!
//! assert_eq!(ch.stats().size, 0);
//! ch.close()?;
//! # Ok(()) }
//! ```
//!
//! DESIGN.md in the repository is the normative description of the on-disk format and of the
//! commit, checkpoint and replay protocols.

#[cfg(feature = "cli")]
pub mod agent;
pub mod at_rest;
mod background;
#[cfg(feature = "cli")]
pub mod bench;
pub mod channel;
mod checkpoint;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod crashtest;
pub mod error;
pub mod event;
pub mod file_channel;
pub mod format;
mod group_commit;
pub mod ids;
pub mod io;
mod log;
pub mod memory_channel;
pub mod offline;
mod pointer_queue;
mod poison;
mod queue;
mod read_ahead;
pub mod replay;
mod segment;
pub mod stats;

pub use channel::{Channel, Transaction};
pub use config::{FileChannelConfig, FsyncPolicy, RecoveryMode};
pub use error::{Error, PutError, Result};
pub use event::Event;
pub use file_channel::FileChannel;
pub use memory_channel::{MemoryChannel, MemoryChannelConfig};
pub use replay::{RecoveryReport, ReplayProgress};
pub use stats::ChannelStats;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
