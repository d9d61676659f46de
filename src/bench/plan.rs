//! What a `tidegate bench` run will do: the options, their checks, and the sweep.
//!
//! [`Plan::new`] checks everything it can before anything runs: a zero batch, size or count,
//! a directory that is missing, not a directory or not writable, too little free space for the
//! planned run, a memory channel that would not fit in memory. Comma lists of event sizes,
//! batches, producer counts and fsync policies become their cross product, for each directory.
//! [`Plan::run`] then runs the configurations one after the other, each in a fresh
//! subdirectory that it removes afterwards, and stops cleanly between two transactions when
//! asked to.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::BenchError;
use super::regime::DiskRegimeTool;
use super::report::{BenchReport, ConfigReport, DirRegime};
use super::workload::{self, Amount, ChannelKind, ConfigRun, RoundResult, Workload};
use crate::FsyncPolicy;
use crate::at_rest::Compression;
use crate::config::MIN_SEGMENT_SIZE;

/// Bytes the file channel writes per event beyond its body: a Put record's 40 bytes, a Take
/// record's 44 bytes (DESIGN.md), rounded up.
const LOG_BYTES_PER_EVENT: u64 = 96;
/// Bytes per transaction: a Commit record, for the put and the take transaction.
const LOG_BYTES_PER_BATCH: u64 = 2 * 36;
/// Most bytes of events a memory-channel phase may queue.
pub const MEMORY_BUDGET: u64 = 4 << 30;
/// A timed phase needs room for at least this many batches, or the run is refused.
const MIN_TIMED_BATCHES: u64 = 10;

/// Everything `tidegate bench` was asked for.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The directories to benchmark (each a storage backend). Not needed for the memory
    /// channel.
    pub dirs: Vec<PathBuf>,
    /// The channel.
    pub channel: ChannelKind,
    /// Event body sizes to sweep.
    pub event_sizes: Vec<usize>,
    /// Batch sizes (events per transaction) to sweep.
    pub batches: Vec<usize>,
    /// Producer counts to sweep.
    pub producers: Vec<usize>,
    /// Consumer threads.
    pub consumers: usize,
    /// Fsync policies to sweep.
    pub fsync: Vec<FsyncPolicy>,
    /// Events or time per phase.
    pub amount: Amount,
    /// Data directories per benchmarked directory.
    pub data_dirs_per_dir: usize,
    /// Recorded rounds per configuration.
    pub rounds: usize,
    /// The file channel's segment size.
    pub segment_size: u64,
    /// Run an unrecorded warm-up round first.
    pub warm_up: bool,
    /// Encrypt the file channel's log.
    pub encrypt: bool,
    /// Compression codecs to sweep (file channel).
    pub compression: Vec<Compression>,
}

/// One configuration of the plan and where it runs.
#[derive(Debug, Clone)]
pub struct PlannedConfig {
    /// The benchmarked directory (`None` for the memory channel).
    pub dir: Option<PathBuf>,
    /// The workload.
    pub workload: Workload,
}

/// A checked run: see the module docs.
#[derive(Debug, Clone)]
pub struct Plan {
    options: BenchOptions,
    configs: Vec<PlannedConfig>,
}

/// What [`Plan::run`] reports while it runs.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Progress<'a> {
    /// Configuration `index` (of `total`) starts.
    ConfigStarted {
        /// 0-based.
        index: usize,
        /// Configurations in the plan.
        total: usize,
        /// The configuration.
        config: &'a PlannedConfig,
    },
    /// A recorded round finished.
    RoundDone {
        /// The configuration's index.
        config: usize,
        /// 0-based round number.
        round: usize,
        /// What it measured.
        result: &'a RoundResult,
    },
    /// The `disk-regime` script ran on a directory.
    Regime {
        /// "before" or "after".
        when: &'static str,
        /// Its line.
        line: &'a str,
    },
}

fn invalid(msg: impl Into<String>) -> BenchError {
    BenchError::Invalid(msg.into())
}

fn positive<T: PartialEq + Default + Copy>(name: &str, values: &[T]) -> Result<(), BenchError> {
    if values.is_empty() {
        return Err(invalid(format!("{name}: no value given")));
    }
    if values.contains(&T::default()) {
        return Err(invalid(format!(
            "{name}: 0 is not allowed, it must be at least 1"
        )));
    }
    Ok(())
}

/// Bytes a file-channel configuration writes into its directory at most: two phases' log
/// records per round (put phase, end-to-end phase; segments are collected between rounds), the
/// active and the spare segment of each data directory and the collected ones it keeps for reuse
/// (`recycle_segments`), plus one segment of rounding, the baseline's ring, the probe file and
/// the channel's free-space floor.
pub fn planned_bytes(w: &Workload, events: u64) -> u64 {
    let batches = events.div_ceil(w.batch.max(1) as u64);
    let log = events
        .saturating_mul(w.event_size as u64 + LOG_BYTES_PER_EVENT)
        .saturating_add(batches.saturating_mul(LOG_BYTES_PER_BATCH))
        .saturating_mul(2);
    let segments = w.segment_size.saturating_mul(
        (2 + u64::from(crate::config::DEFAULT_RECYCLE_SEGMENTS))
            * w.data_dirs_per_dir.max(1) as u64
            + 1,
    );
    let ring = super::baseline::ring_size(events, w.event_size, w.batch);
    log.saturating_add(segments)
        .saturating_add(ring)
        .saturating_add(2 << 20)
}

/// Free bytes for an unprivileged writer in `dir`.
fn free_bytes(dir: &Path) -> Result<u64, BenchError> {
    let st = rustix::fs::statvfs(dir).map_err(|e| BenchError::io(dir)(e.into()))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Creates and removes a file in `dir` to check that it is writable.
fn check_writable(dir: &Path) -> Result<(), BenchError> {
    let probe = dir.join(format!(
        ".tidegate-bench-write-check-{}",
        std::process::id()
    ));
    std::fs::write(&probe, b"x")
        .map_err(|e| invalid(format!("--dir {}: not writable ({e})", dir.display())))?;
    std::fs::remove_file(&probe).map_err(BenchError::io(&probe))
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / f64::from(1u32 << 30))
}

impl Plan {
    /// Checks the options and builds the sweep.
    pub fn new(mut options: BenchOptions) -> Result<Plan, BenchError> {
        positive("--event-size", &options.event_sizes)?;
        positive("--batch", &options.batches)?;
        positive("--producers", &options.producers)?;
        positive("--consumers", &[options.consumers])?;
        positive("--rounds", &[options.rounds])?;
        positive("--data-dirs-per-dir", &[options.data_dirs_per_dir])?;
        if options.fsync.is_empty() {
            return Err(invalid("--fsync: no value given"));
        }
        if options.compression.is_empty() {
            options.compression.push(Compression::None);
        }
        if options.channel == ChannelKind::Memory
            && (options.encrypt || options.compression.iter().any(|c| *c != Compression::None))
        {
            return Err(invalid(
                "--encrypt and --compress apply to the file channel only (--channel file)",
            ));
        }
        match options.amount {
            Amount::Events(0) => return Err(invalid("--events: 0 is not allowed")),
            Amount::Duration(d) if d.is_zero() => {
                return Err(invalid("--duration: must be above zero"));
            }
            _ => {}
        }
        if options.segment_size < MIN_SEGMENT_SIZE {
            return Err(invalid(format!(
                "--segment-size: {} is below the minimum of {MIN_SEGMENT_SIZE}",
                options.segment_size
            )));
        }
        let mut dirs: Vec<Option<PathBuf>> = Vec::new();
        match options.channel {
            ChannelKind::File => {
                if options.dirs.is_empty() {
                    return Err(invalid(
                        "--dir: the file channel needs at least one directory to benchmark",
                    ));
                }
                for d in &options.dirs {
                    if !d.exists() {
                        return Err(invalid(format!("--dir {}: does not exist", d.display())));
                    }
                    if !d.is_dir() {
                        return Err(invalid(format!("--dir {}: not a directory", d.display())));
                    }
                    check_writable(d)?;
                    if !dirs.contains(&Some(d.clone())) {
                        dirs.push(Some(d.clone()));
                    }
                }
            }
            ChannelKind::Memory => {
                options.dirs.clear();
                dirs.push(None);
            }
        }
        let mut configs = Vec::new();
        for dir in &dirs {
            for &event_size in &options.event_sizes {
                for &batch in &options.batches {
                    for &producers in &options.producers {
                        for (&fsync, &compression) in options
                            .fsync
                            .iter()
                            .flat_map(|f| options.compression.iter().map(move |c| (f, c)))
                        {
                            configs.push(PlannedConfig {
                                dir: dir.clone(),
                                workload: Workload {
                                    channel: options.channel,
                                    event_size,
                                    batch,
                                    producers,
                                    consumers: options.consumers,
                                    fsync,
                                    amount: options.amount,
                                    max_events: u64::MAX,
                                    data_dirs_per_dir: options.data_dirs_per_dir,
                                    segment_size: options.segment_size,
                                    encrypt: options.encrypt,
                                    compression,
                                },
                            });
                        }
                    }
                }
            }
        }
        for c in &mut configs {
            Self::bound(c)?;
        }
        Ok(Plan { options, configs })
    }

    /// Checks one configuration's space (or memory) and bounds a timed phase by it.
    fn bound(c: &mut PlannedConfig) -> Result<(), BenchError> {
        let w = &mut c.workload;
        let min_events = w.batch as u64 * w.producers as u64 * MIN_TIMED_BATCHES;
        if let Some(dir) = &c.dir {
            workload::file_channel_config(dir, w).validate()?;
            let free = free_bytes(dir)?;
            match w.amount {
                Amount::Events(n) => {
                    let need = planned_bytes(w, n);
                    if need > free {
                        return Err(invalid(format!(
                            "--dir {}: too little free space: {} events of {} B need about {} \
                             (log records of two phases, segments, the baseline file), {} free",
                            dir.display(),
                            n,
                            w.event_size,
                            gib(need),
                            gib(free)
                        )));
                    }
                }
                Amount::Duration(_) => {
                    // The most events whose planned bytes fit in half the free space.
                    let fixed = planned_bytes(w, 0);
                    let per_event =
                        2 * (w.event_size as u64 + LOG_BYTES_PER_EVENT) + w.event_size as u64;
                    let max = (free / 2).saturating_sub(fixed) / per_event;
                    if max < min_events {
                        return Err(invalid(format!(
                            "--dir {}: too little free space for a timed run: {} free, {} \
                             needed for {min_events} events",
                            dir.display(),
                            gib(free),
                            gib(planned_bytes(w, min_events).saturating_mul(2))
                        )));
                    }
                    w.max_events = max;
                }
            }
        } else {
            let max = MEMORY_BUDGET / (w.event_size as u64).max(1);
            match w.amount {
                Amount::Events(n) if n > max => {
                    return Err(invalid(format!(
                        "--events {n}: the memory channel would hold {} of events; at most {} \
                         ({max} events of {} B)",
                        gib(n.saturating_mul(w.event_size as u64)),
                        gib(MEMORY_BUDGET),
                        w.event_size
                    )));
                }
                Amount::Duration(_) if max < min_events => {
                    return Err(invalid(format!(
                        "--event-size {}: too large for the memory channel's {} budget",
                        w.event_size,
                        gib(MEMORY_BUDGET)
                    )));
                }
                _ => w.max_events = max,
            }
        }
        Ok(())
    }

    /// The configurations, in the order they run.
    pub fn configurations(&self) -> &[PlannedConfig] {
        &self.configs
    }

    /// The options.
    pub fn options(&self) -> &BenchOptions {
        &self.options
    }

    /// Runs every configuration, `rounds` recorded rounds each, and reports. `stop` (set by a
    /// Ctrl-C handler) ends the run between two transactions; the report then has the rounds
    /// finished so far and says it was interrupted. A configuration that fails is reported with
    /// its error and the run goes on with the next one.
    pub fn run(&self, stop: &AtomicBool, progress: &mut dyn FnMut(Progress<'_>)) -> BenchReport {
        let tool = if self.options.channel == ChannelKind::File {
            DiskRegimeTool::find()
        } else {
            None
        };
        let mut report = BenchReport::new(&self.options, tool.as_ref().map(DiskRegimeTool::path));
        for d in &self.options.dirs {
            let line = tool.as_ref().map(|t| t.probe(d));
            if let Some(l) = &line {
                progress(Progress::Regime {
                    when: "before",
                    line: l,
                });
            }
            report.disk_regime.push(DirRegime {
                dir: d.clone(),
                before: line,
                after: None,
            });
        }
        let total = self.configs.len();
        for (index, config) in self.configs.iter().enumerate() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            progress(Progress::ConfigStarted {
                index,
                total,
                config,
            });
            let mut cr = ConfigReport::new(config);
            workload::reset_peak_rss();
            let outcome = self.run_config(index, config, stop, &mut cr, progress);
            cr.peak_rss_bytes = workload::peak_rss_bytes();
            match outcome {
                Ok(()) => {}
                Err(BenchError::Interrupted) => report.interrupted = true,
                Err(e) => cr.error = Some(e.to_string()),
            }
            cr.finish();
            report.configurations.push(cr);
            if report.interrupted {
                break;
            }
        }
        report.interrupted |= stop.load(Ordering::Relaxed);
        if let Some(t) = &tool {
            for r in &mut report.disk_regime {
                let line = t.probe(&r.dir);
                progress(Progress::Regime {
                    when: "after",
                    line: &line,
                });
                r.after = Some(line);
            }
        }
        report
    }

    fn run_config(
        &self,
        index: usize,
        config: &PlannedConfig,
        stop: &AtomicBool,
        cr: &mut ConfigReport,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<(), BenchError> {
        let work = match &config.dir {
            Some(d) => Some(WorkDir::create(d, index)?),
            None => None,
        };
        let mut run = ConfigRun::open(&config.workload, work.as_ref().map(|w| w.path()), stop)?;
        let result = (|| {
            if self.options.warm_up {
                let events = match config.workload.amount {
                    Amount::Events(n) => (n / 10).clamp(1, 100_000),
                    Amount::Duration(_) => 20_000,
                }
                .max(config.workload.batch as u64)
                .min(config.workload.events_target());
                run.warm_up(events)?;
            }
            for round in 0..self.options.rounds {
                let r = run.round()?;
                progress(Progress::RoundDone {
                    config: index,
                    round,
                    result: &r,
                });
                cr.results.push(r);
            }
            Ok(())
        })();
        cr.commit_latency_us = run.put_latency.clone().into();
        cr.take_commit_latency_us = run.take_latency.clone().into();
        let closed = run.close();
        drop(work);
        result.and(closed)
    }
}

/// A configuration's own directory under a benchmarked one, removed (with everything the run
/// left in it) on drop.
#[derive(Debug)]
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn create(parent: &Path, index: usize) -> Result<WorkDir, BenchError> {
        let path = parent.join(format!("tidegate-bench-{}-{index}", std::process::id()));
        std::fs::create_dir(&path).map_err(BenchError::io(&path))?;
        Ok(WorkDir { path })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(dir = %self.path.display(), error = %e, "could not remove the benchmark's files");
        }
    }
}

/// Parses a duration such as `10s`, `500ms`, `2m` or `1.5s` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (try 10s, 500ms or 2m)"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("{s:?}: unknown unit {other:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path) -> BenchOptions {
        BenchOptions {
            dirs: vec![dir.to_path_buf()],
            channel: ChannelKind::File,
            event_sizes: vec![512],
            batches: vec![10, 100],
            producers: vec![1, 4],
            consumers: 1,
            fsync: vec![FsyncPolicy::Always, FsyncPolicy::Never],
            amount: Amount::Events(1000),
            data_dirs_per_dir: 1,
            rounds: 1,
            segment_size: 1 << 20,
            warm_up: false,
            encrypt: false,
            compression: vec![Compression::None],
        }
    }

    #[test]
    fn comma_lists_make_the_cross_product() -> Result<(), BenchError> {
        let dir = tempfile::tempdir().map_err(BenchError::io(Path::new("tempdir")))?;
        let plan = Plan::new(options(dir.path()))?;
        assert_eq!(plan.configurations().len(), 8);
        let mut seen: Vec<(usize, usize, &str)> = plan
            .configurations()
            .iter()
            .map(|c| {
                (
                    c.workload.batch,
                    c.workload.producers,
                    workload::fsync_name(c.workload.fsync),
                )
            })
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 8);
        Ok(())
    }

    #[test]
    fn bad_options_are_refused_before_running() -> Result<(), BenchError> {
        let dir = tempfile::tempdir().map_err(BenchError::io(Path::new("tempdir")))?;
        let mut o = options(dir.path());
        o.batches = vec![100, 0];
        let e = Plan::new(o).expect_err("a zero batch");
        assert!(e.to_string().contains("--batch"), "{e}");
        let mut o = options(dir.path());
        o.dirs = vec![dir.path().join("missing")];
        let e = Plan::new(o).expect_err("a missing dir");
        assert!(e.to_string().contains("does not exist"), "{e}");
        let mut o = options(dir.path());
        o.amount = Amount::Events(1 << 50);
        let e = Plan::new(o).expect_err("too little space");
        assert!(e.to_string().contains("too little free space"), "{e}");
        let mut o = options(dir.path());
        o.channel = ChannelKind::Memory;
        o.amount = Amount::Events(1 << 40);
        let e = Plan::new(o).expect_err("too much memory");
        assert!(e.to_string().contains("memory channel"), "{e}");
        Ok(())
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
