//! One configuration of `tidegate bench` and its rounds: the channel it opens, the put, take
//! and end-to-end phases it times, and the raw baseline it interleaves with them.
//!
//! A round is, in this order:
//!
//! 1. **put**: `producers` threads put and commit events in transactions of `batch` until the
//!    round's events are in (or its time is up). Each `commit()` call is timed into the
//!    commit-latency histogram; the channel's `fsyncs` and `commits` counters give the fsyncs per
//!    commit.
//! 2. **take**: `consumers` threads take and commit, in transactions of up to `batch`, exactly
//!    the events the put phase queued.
//! 3. **end to end**: producers and consumers at once, from an empty queue, until everything put
//!    was taken.
//! 4. **baseline** (file channel only): one thread writes the put phase's bytes (as many events
//!    of `event_size` bytes, in the same batches) into a preallocated file in the same
//!    directory, one `pwrite` + `fdatasync` per batch ([`baseline::put_rate`]).
//!
//! Then, untimed, a checkpoint lets the channel collect (delete, or keep for reuse) the
//! segments the round emptied. A quick 50-sync probe before and after the round labels its disk
//! regime ([`QuickProbe`]).
//!
//! [`file_channel_config`] is the one place that turns a [`Workload`] into a channel
//! configuration: options such as encryption or compression belong there.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::BenchError;
use super::baseline::{self, RawFile};
use super::regime::QuickProbe;
use crate::at_rest::{Compression, EncryptionConfig};
use crate::{
    Channel, Event, FileChannel, FileChannelConfig, FsyncPolicy, MemoryChannel, MemoryChannelConfig,
};

/// Which channel a configuration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// [`FileChannel`]: durable, measured against the raw baseline.
    File,
    /// [`MemoryChannel`]: no durability, no disk, so no baseline: the ceiling of the engine's
    /// transaction machinery.
    Memory,
}

impl ChannelKind {
    /// `file` or `memory`.
    pub fn name(self) -> &'static str {
        match self {
            ChannelKind::File => "file",
            ChannelKind::Memory => "memory",
        }
    }
}

/// How much work a phase does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    /// Exactly this many events per phase.
    Events(u64),
    /// As many events as fit in this time per phase (at most [`Workload::max_events`]).
    Duration(Duration),
}

/// One configuration: a point of the sweep's cross product.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The channel.
    pub channel: ChannelKind,
    /// Body bytes per event (no headers).
    pub event_size: usize,
    /// Events per transaction.
    pub batch: usize,
    /// Producer threads.
    pub producers: usize,
    /// Consumer threads.
    pub consumers: usize,
    /// The file channel's fsync policy.
    pub fsync: FsyncPolicy,
    /// Events or time per phase.
    pub amount: Amount,
    /// Most events a phase may put (bounds a timed phase by the free space or memory).
    pub max_events: u64,
    /// Data directories the file channel spreads its log over inside each benchmarked
    /// directory.
    pub data_dirs_per_dir: usize,
    /// The file channel's segment size in bytes.
    pub segment_size: u64,
    /// Encrypt the log (AES-256-GCM, a fresh random key in the work directory).
    pub encrypt: bool,
    /// How the file channel compresses payloads.
    pub compression: Compression,
}

/// The key file an encrypting configuration generates in its work directory.
pub const KEY_FILE: &str = "bench.key";

/// `always`, `interval` or `never`.
pub fn fsync_name(p: FsyncPolicy) -> &'static str {
    match p {
        FsyncPolicy::Always => "always",
        FsyncPolicy::Interval(_) => "interval",
        _ => "never",
    }
}

impl Workload {
    /// The events a phase asks for: the count, or the cap of a timed phase.
    pub fn events_target(&self) -> u64 {
        match self.amount {
            Amount::Events(n) => n.min(self.max_events),
            Amount::Duration(_) => self.max_events,
        }
    }

    fn deadline(&self, from: Instant) -> Option<Instant> {
        match self.amount {
            Amount::Events(_) => None,
            Amount::Duration(d) => Some(from + d),
        }
    }
}

/// Room above the body size in `max_event_size`, which also counts the encoded headers' length
/// fields.
const EVENT_SIZE_SLACK: u64 = 64;

/// The file channel configuration of a workload whose files go under `root`: the checkpoint in
/// `root/checkpoint`, the log in `root/data-0` ... `root/data-{n-1}`.
///
/// Everything else is the channel's default except what a benchmark needs: room for every
/// event of a phase, transactions as large as a batch, and the smallest free-space floor (the
/// benchmark checks the free space itself before it starts), and the at-rest options: with
/// `encrypt`, key 1 from `root/bench.key` ([`KEY_FILE`], which [`ConfigRun::open`] generates).
/// This is the one function that maps benchmark options to channel options.
pub fn file_channel_config(root: &Path, w: &Workload) -> FileChannelConfig {
    let data: Vec<PathBuf> = (0..w.data_dirs_per_dir.max(1))
        .map(|i| root.join(format!("data-{i}")))
        .collect();
    let mut cfg = FileChannelConfig::new(root.join("checkpoint"), data);
    if w.encrypt {
        cfg = cfg.encryption(EncryptionConfig::new(1).key(1, root.join(KEY_FILE)));
    }
    cfg.compression(w.compression)
        .capacity(1 << 40)
        .transaction_capacity(w.batch.max(crate::config::DEFAULT_TRANSACTION_CAPACITY))
        .max_event_size(w.event_size as u64 + EVENT_SIZE_SLACK)
        .max_segment_size(w.segment_size)
        .minimum_required_space(crate::config::MIN_MINIMUM_REQUIRED_SPACE)
        .checkpoint_on_close(false)
        .fsync(w.fsync)
}

/// The memory channel configuration of a workload.
pub fn memory_channel_config(w: &Workload) -> MemoryChannelConfig {
    MemoryChannelConfig {
        capacity: 1 << 40,
        transaction_capacity: w.batch.max(crate::config::DEFAULT_TRANSACTION_CAPACITY),
        max_event_size: w.event_size as u64 + EVENT_SIZE_SLACK,
        ..MemoryChannelConfig::default()
    }
}

/// What one phase did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PhaseResult {
    /// Events put (put phase), taken (take phase) or carried through (end to end).
    pub events: u64,
    /// Wall time of the phase.
    pub elapsed: Duration,
}

impl PhaseResult {
    /// Events per second.
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What one round measured.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundResult {
    /// The put phase.
    pub put: PhaseResult,
    /// The take phase.
    pub take: PhaseResult,
    /// The end-to-end phase.
    pub end_to_end: PhaseResult,
    /// The raw baseline (file channel only): the put phase's events, written raw.
    pub baseline: Option<PhaseResult>,
    /// Commits during the put phase (the channel's counter).
    pub put_commits: u64,
    /// Segment `fdatasync`s during the put phase (the channel's counter).
    pub put_fsyncs: u64,
    /// CPU time of the whole process during the three channel phases (every thread, including
    /// the channel's background threads; the baseline is not included).
    pub cpu: Duration,
    /// Median sync latency of the quick probe before and after the round, in microseconds
    /// (file channel only).
    pub probe_us: Option<(f64, f64)>,
}

impl RoundResult {
    /// Put events per second over baseline events per second.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline
            .map(|b| self.put.events_per_sec() / b.events_per_sec())
    }

    /// "fast", "throttled", "mixed", or `None` when the round had no probe.
    pub fn regime(&self) -> Option<&'static str> {
        self.probe_us.map(|(a, b)| QuickProbe::round_label(a, b))
    }

    /// CPU seconds per million events carried through the channel (each put once and taken
    /// once: the put phase's events plus the end-to-end phase's).
    pub fn cpu_sec_per_million_events(&self) -> f64 {
        let events = (self.put.events + self.end_to_end.events).max(1);
        self.cpu.as_secs_f64() / events as f64 * 1e6
    }
}

/// Commit latencies in microseconds, 3 significant digits, up to an hour.
pub fn new_histogram() -> Histogram<u64> {
    // 1 us to 1 h at 3 significant figures: a fixed, valid configuration.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Process CPU time (all threads) from `CLOCK_PROCESS_CPUTIME_ID`.
pub fn process_cpu_time() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// Resets the process's peak resident set size (`VmHWM`) by writing `5` to
/// `/proc/self/clear_refs` (Linux 4.0+), so the next [`peak_rss_bytes`] covers only what follows.
/// Does nothing where that file is missing.
pub fn reset_peak_rss() {
    let _ignored = std::fs::write("/proc/self/clear_refs", b"5");
}

/// The process's peak resident set size (`VmHWM` of `/proc/self/status`) in bytes, 0 where it
/// cannot be read.
pub fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            let kib: u64 = l
                .strip_prefix("VmHWM:")?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// Takes up to `batch` events from the shared count `left`; 0 when none are left.
fn claim(left: &AtomicU64, batch: u64) -> u64 {
    left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
        (r > 0).then(|| r - r.min(batch))
    })
    .map_or(0, |r| r.min(batch))
}

/// A configuration being measured: its channel, baseline file and latency histograms.
pub struct ConfigRun<'a> {
    workload: Workload,
    root: Option<PathBuf>,
    channel: Box<dyn Channel>,
    raw: Option<RawFile>,
    probe: Option<QuickProbe>,
    event: Event,
    stop: &'a AtomicBool,
    /// Put commit latencies of every recorded round, in microseconds.
    pub put_latency: Histogram<u64>,
    /// Take commit latencies of every recorded round, in microseconds.
    pub take_latency: Histogram<u64>,
}

impl std::fmt::Debug for ConfigRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigRun")
            .field("workload", &self.workload)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl<'a> ConfigRun<'a> {
    /// Opens the channel (for a file channel, in `root`, which must exist and be empty), and
    /// the baseline file and regime probe next to it. `stop` ends the run between two
    /// transactions when it becomes true.
    pub fn open(
        w: &Workload,
        root: Option<&Path>,
        stop: &'a AtomicBool,
    ) -> Result<ConfigRun<'a>, BenchError> {
        let (channel, raw, probe): (Box<dyn Channel>, _, _) = match (w.channel, root) {
            (ChannelKind::File, Some(root)) => {
                if w.encrypt {
                    let key = root.join(KEY_FILE);
                    crate::at_rest::generate_key_file(&key).map_err(BenchError::io(&key))?;
                }
                let ch = FileChannel::open(file_channel_config(root, w))?;
                let raw_path = root.join("baseline.raw");
                let ring = baseline::ring_size(w.events_target(), w.event_size, w.batch);
                let raw = RawFile::create(&raw_path, ring).map_err(BenchError::io(&raw_path))?;
                let probe_path = root.join("regime.probe");
                let probe = QuickProbe::new(&probe_path).map_err(BenchError::io(&probe_path))?;
                (Box::new(ch), Some(raw), Some(probe))
            }
            (ChannelKind::File, None) => {
                return Err(BenchError::Invalid(
                    "the file channel needs a directory (--dir)".into(),
                ));
            }
            (ChannelKind::Memory, _) => (
                Box::new(MemoryChannel::new(memory_channel_config(w))),
                None,
                None,
            ),
        };
        Ok(ConfigRun {
            workload: w.clone(),
            root: root.map(Path::to_path_buf),
            channel,
            raw,
            probe,
            event: Event::new(
                (0..w.event_size)
                    .map(|i| (i % 251) as u8 + 1)
                    .collect::<Vec<u8>>(),
            ),
            stop,
            put_latency: new_histogram(),
            take_latency: new_histogram(),
        })
    }

    /// The workload.
    pub fn workload(&self) -> &Workload {
        &self.workload
    }

    /// An unrecorded round of `events` events (put, take, baseline), to warm caches, threads
    /// and the first segments.
    pub fn warm_up(&mut self, events: u64) -> Result<(), BenchError> {
        let mut w = self.workload.clone();
        w.amount = Amount::Events(events);
        let (put, _) = self.put_phase(&w)?;
        self.take_phase(&w, put.events)?;
        if let Some(raw) = &mut self.raw {
            baseline::put_rate(raw, w.event_size, w.batch, put.events)
                .map_err(BenchError::io(raw.path()))?;
        }
        self.channel.checkpoint()?;
        Ok(())
    }

    /// Runs one recorded round. Returns [`BenchError::Interrupted`] when `stop` was set during
    /// it (the round is then not recorded).
    pub fn round(&mut self) -> Result<RoundResult, BenchError> {
        let w = self.workload.clone();
        let probe_before = match &mut self.probe {
            Some(p) => Some(p.p50_us().map_err(BenchError::io(p.path()))?),
            None => None,
        };
        let s0 = self.channel.stats();
        let cpu0 = process_cpu_time();
        let (put, put_lat) = self.put_phase(&w)?;
        let s1 = self.channel.stats();
        let (take, take_lat) = self.take_phase(&w, put.events)?;
        let end_to_end = self.end_to_end_phase(&w)?;
        let cpu = process_cpu_time().saturating_sub(cpu0);
        let baseline = match &mut self.raw {
            Some(raw) => {
                let elapsed = baseline::put_rate(raw, w.event_size, w.batch, put.events)
                    .map_err(BenchError::io(raw.path()))?;
                Some(PhaseResult {
                    events: put.events,
                    elapsed,
                })
            }
            None => None,
        };
        let probe_us = match (&mut self.probe, probe_before) {
            (Some(p), Some(before)) => {
                Some((before, p.p50_us().map_err(BenchError::io(p.path()))?))
            }
            _ => None,
        };
        if self.stop.load(Ordering::Relaxed) {
            return Err(BenchError::Interrupted);
        }
        // Untimed: let a checkpoint collect the segments this round emptied (kept for reuse, up to `recycle_segments`).
        self.channel.checkpoint()?;
        self.put_latency.add(&put_lat).ok();
        self.take_latency.add(&take_lat).ok();
        Ok(RoundResult {
            put,
            take,
            end_to_end,
            baseline,
            put_commits: s1.commits - s0.commits,
            put_fsyncs: s1.fsyncs - s0.fsyncs,
            cpu,
            probe_us,
        })
    }

    /// Closes the channel. The caller removes the directory.
    pub fn close(self) -> Result<(), BenchError> {
        self.channel.close()?;
        Ok(())
    }

    fn interrupted(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// `producers` threads put `w.events_target()` events (or until the deadline).
    fn put_phase(&self, w: &Workload) -> Result<(PhaseResult, Histogram<u64>), BenchError> {
        let left = AtomicU64::new(w.events_target());
        let started = Instant::now();
        let deadline = w.deadline(started);
        let results = std::thread::scope(|s| {
            let handles: Vec<_> = (0..w.producers.max(1))
                .map(|_| s.spawn(|| self.produce(w, &left, deadline, None)))
                .collect();
            join_all(handles)
        })?;
        let elapsed = started.elapsed();
        let mut hist = new_histogram();
        let mut events = 0;
        for (n, h) in results {
            events += n;
            hist.add(&h).ok();
        }
        if self.interrupted() {
            return Err(BenchError::Interrupted);
        }
        Ok((PhaseResult { events, elapsed }, hist))
    }

    /// One producer: claims batches from `left` until none are left, the deadline passes or
    /// the run is stopped. Adds what it committed to `produced`.
    fn produce(
        &self,
        w: &Workload,
        left: &AtomicU64,
        deadline: Option<Instant>,
        produced: Option<&AtomicU64>,
    ) -> Result<(u64, Histogram<u64>), BenchError> {
        let mut hist = new_histogram();
        let mut done = 0;
        loop {
            if self.interrupted() || deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let k = claim(left, w.batch as u64);
            if k == 0 {
                break;
            }
            let mut tx = self.channel.transaction();
            for _ in 0..k {
                tx.put(self.event.clone()).map_err(|e| e.error)?;
            }
            let t = Instant::now();
            tx.commit()?;
            hist.saturating_record(micros(t.elapsed()));
            done += k;
            if let Some(p) = produced {
                p.fetch_add(k, Ordering::AcqRel);
            }
        }
        Ok((done, hist))
    }

    /// `consumers` threads take exactly `events` queued events.
    fn take_phase(
        &self,
        w: &Workload,
        events: u64,
    ) -> Result<(PhaseResult, Histogram<u64>), BenchError> {
        let left = AtomicU64::new(events);
        let started = Instant::now();
        let results = std::thread::scope(|s| {
            let handles: Vec<_> = (0..w.consumers.max(1))
                .map(|_| s.spawn(|| self.consume_claimed(w, &left)))
                .collect();
            join_all(handles)
        })?;
        let elapsed = started.elapsed();
        let mut hist = new_histogram();
        let mut taken = 0;
        for (n, h) in results {
            taken += n;
            hist.add(&h).ok();
        }
        if self.interrupted() {
            return Err(BenchError::Interrupted);
        }
        Ok((
            PhaseResult {
                events: taken,
                elapsed,
            },
            hist,
        ))
    }

    /// One consumer of the take phase: claims up to a batch from `left`, takes that many.
    fn consume_claimed(
        &self,
        w: &Workload,
        left: &AtomicU64,
    ) -> Result<(u64, Histogram<u64>), BenchError> {
        let mut hist = new_histogram();
        let mut taken = 0;
        let mut last_progress = Instant::now();
        while !self.interrupted() {
            let k = claim(left, w.batch as u64);
            if k == 0 {
                break;
            }
            let mut tx = self.channel.transaction();
            let got = tx.take_batch(k as usize, Duration::from_millis(50))?.len() as u64;
            let t = Instant::now();
            tx.commit()?;
            if got > 0 {
                hist.saturating_record(micros(t.elapsed()));
                last_progress = Instant::now();
            }
            if got < k {
                left.fetch_add(k - got, Ordering::AcqRel);
            }
            taken += got;
            if last_progress.elapsed() > STALL_LIMIT {
                return Err(BenchError::Stalled {
                    missing: left.load(Ordering::Acquire),
                });
            }
        }
        Ok((taken, hist))
    }

    /// Producers and consumers at once, from an empty queue, until all that was put is taken.
    fn end_to_end_phase(&self, w: &Workload) -> Result<PhaseResult, BenchError> {
        let left = AtomicU64::new(w.events_target());
        let produced = AtomicU64::new(0);
        let taken = AtomicU64::new(0);
        let producers_done = AtomicBool::new(false);
        let started = Instant::now();
        let deadline = w.deadline(started);
        std::thread::scope(|s| -> Result<(), BenchError> {
            let consumers: Vec<_> = (0..w.consumers.max(1))
                .map(|_| s.spawn(|| self.consume_until(w, &produced, &taken, &producers_done)))
                .collect();
            let producers: Vec<_> = (0..w.producers.max(1))
                .map(|_| s.spawn(|| self.produce(w, &left, deadline, Some(&produced))))
                .collect();
            let produced_result = join_all(producers);
            producers_done.store(true, Ordering::Release);
            let consumed_result = join_all(consumers);
            produced_result?;
            consumed_result?;
            Ok(())
        })?;
        let elapsed = started.elapsed();
        if self.interrupted() {
            return Err(BenchError::Interrupted);
        }
        Ok(PhaseResult {
            events: taken.load(Ordering::Acquire),
            elapsed,
        })
    }

    /// One consumer of the end-to-end phase: takes until the producers are done and every
    /// event they put was taken.
    fn consume_until(
        &self,
        w: &Workload,
        produced: &AtomicU64,
        taken: &AtomicU64,
        producers_done: &AtomicBool,
    ) -> Result<u64, BenchError> {
        let mut mine = 0;
        let mut last_progress = Instant::now();
        while !self.interrupted() {
            if producers_done.load(Ordering::Acquire)
                && taken.load(Ordering::Acquire) >= produced.load(Ordering::Acquire)
            {
                break;
            }
            let mut tx = self.channel.transaction();
            let got = tx.take_batch(w.batch, Duration::from_millis(10))?.len() as u64;
            tx.commit()?;
            if got > 0 {
                last_progress = Instant::now();
            } else if producers_done.load(Ordering::Acquire)
                && last_progress.elapsed() > STALL_LIMIT
            {
                return Err(BenchError::Stalled {
                    missing: produced
                        .load(Ordering::Acquire)
                        .saturating_sub(taken.load(Ordering::Acquire)),
                });
            }
            taken.fetch_add(got, Ordering::AcqRel);
            mine += got;
        }
        Ok(mine)
    }
}

/// How long a consumer waits for an event that was committed before it calls the run stalled.
const STALL_LIMIT: Duration = Duration::from_secs(30);

/// Joins every thread, returning the first error (a panicking thread is an error too).
fn join_all<T>(
    handles: Vec<std::thread::ScopedJoinHandle<'_, Result<T, BenchError>>>,
) -> Result<Vec<T>, BenchError> {
    let mut out = Vec::with_capacity(handles.len());
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(v)) => out.push(v),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(BenchError::Invalid("a benchmark thread panicked".into()));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(channel: ChannelKind, producers: usize, consumers: usize) -> Workload {
        Workload {
            channel,
            event_size: 64,
            batch: 7,
            producers,
            consumers,
            fsync: FsyncPolicy::Never,
            amount: Amount::Events(500),
            max_events: u64::MAX,
            data_dirs_per_dir: 2,
            segment_size: 64 << 10,
            encrypt: channel == ChannelKind::File,
            compression: Compression::Lz4,
        }
    }

    #[test]
    fn the_channel_configuration_carries_the_at_rest_options() {
        let w = workload(ChannelKind::File, 1, 1);
        let cfg = format!("{:?}", file_channel_config(Path::new("/x"), &w));
        assert!(cfg.contains("compression: Lz4"), "{cfg}");
        assert!(cfg.contains("bench.key"), "{cfg}");
        let plain = Workload {
            encrypt: false,
            compression: Compression::None,
            ..w
        };
        let cfg = format!("{:?}", file_channel_config(Path::new("/x"), &plain));
        assert!(
            cfg.contains("encryption: None") && cfg.contains("compression: None"),
            "{cfg}"
        );
    }

    #[test]
    fn claim_hands_out_exactly_what_is_left() {
        let left = AtomicU64::new(10);
        assert_eq!(claim(&left, 4), 4);
        assert_eq!(claim(&left, 4), 4);
        assert_eq!(claim(&left, 4), 2);
        assert_eq!(claim(&left, 4), 0);
    }

    #[test]
    fn a_round_counts_every_event_once() -> Result<(), BenchError> {
        let stop = AtomicBool::new(false);
        for (kind, p, c) in [
            (ChannelKind::Memory, 3, 2),
            (ChannelKind::File, 1, 1),
            (ChannelKind::File, 4, 3),
        ] {
            let dir = tempfile::tempdir().map_err(BenchError::io(Path::new("tempdir")))?;
            let w = workload(kind, p, c);
            let mut run = ConfigRun::open(&w, Some(dir.path()), &stop)?;
            run.warm_up(50)?;
            let r = run.round()?;
            assert_eq!(r.put.events, 500, "{kind:?} {p}p");
            assert_eq!(r.take.events, 500, "{kind:?} {p}p");
            assert_eq!(r.end_to_end.events, 500, "{kind:?} {p}p");
            assert_eq!(r.baseline.is_some(), kind == ChannelKind::File);
            // 500 events in batches of 7: 72 commits per producer-claimed batch at least.
            assert!(run.put_latency.len() >= 72, "{}", run.put_latency.len());
            if kind == ChannelKind::File {
                assert!(r.put_commits >= 72);
                assert!(r.regime().is_some());
            }
            run.close()?;
        }
        Ok(())
    }

    #[test]
    fn a_stopped_round_is_interrupted() -> Result<(), BenchError> {
        let stop = AtomicBool::new(true);
        let w = workload(ChannelKind::Memory, 2, 2);
        let mut run = ConfigRun::open(&w, None, &stop)?;
        assert!(matches!(run.round(), Err(BenchError::Interrupted)));
        Ok(())
    }
}
