//! `tidegate bench` (feature `cli`): how close a durable channel runs to what a storage backend
//! allows, measured so the answer survives a noisy disk.
//!
//! Our machines' disks drift 10-30x in flush latency over minutes
//! (`../shared/reference/disk-limits.md`), so an absolute rate from one run says little about
//! another. Every round therefore runs the channel *and* a raw baseline on the same directory,
//! one after the other ([`workload`]), and the figure that matters is their ratio, per round,
//! then its median over the rounds ([`report`]).
//!
//! - [`plan`]: the options, their validation (before anything runs) and the sweep's cross
//!   product; [`Plan::run`] runs it.
//! - [`workload`]: one configuration: the channel, its phases (put, take, end to end), the
//!   baseline, the per-round measurements.
//! - [`baseline`]: the raw `pwrite` + `fdatasync` baseline, shared with the criterion benches.
//! - [`regime`]: which disk regime a run and each round saw.
//! - [`report`]: medians, spreads and percentiles; the terminal table, JSON and Markdown.
//! - [`chart`]: the SVG chart.

pub mod baseline;
pub mod chart;
pub mod plan;
pub mod regime;
pub mod report;
pub mod workload;

use std::io;
use std::path::{Path, PathBuf};

pub use plan::{BenchOptions, Plan, Progress};
pub use report::BenchReport;
pub use workload::{Amount, ChannelKind, Workload};

/// Why a benchmark could not run or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A file or directory of the benchmark could not be used.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The channel failed.
    #[error(transparent)]
    Channel(#[from] crate::Error),
    /// The options do not make a runnable benchmark.
    #[error("{0}")]
    Invalid(String),
    /// Stopped by the user (Ctrl-C) before the round finished.
    #[error("interrupted")]
    Interrupted,
    /// Committed events did not reach the consumers.
    #[error("the channel stalled: {missing} committed events were not taken within 30 s")]
    Stalled {
        /// Events put and committed but never taken.
        missing: u64,
    },
}

impl BenchError {
    /// Wraps an I/O error with the path it concerns (for `map_err`).
    pub fn io(path: &Path) -> impl FnOnce(io::Error) -> BenchError + '_ {
        move |source| BenchError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
