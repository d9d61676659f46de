//! Helpers shared by the benchmark programs: where the data goes, channel setup, the raw
//! write+fdatasync baseline and the disk-regime probes (both from `tidegate::bench`, shared with
//! `tidegate bench`) and small statistics.
//!
//! Each bench target includes this module with `mod common;` and uses a different part of it.
#![allow(
    dead_code,
    reason = "each bench target uses a different subset of these helpers"
)]

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tidegate::bench::regime::DiskRegimeTool;
use tidegate::bench::report::Spread;
use tidegate::bench::{baseline, regime};
use tidegate::{Event, FileChannel, FileChannelConfig};

/// Per-event overhead the engine writes for a Put record with no headers: 32-byte record
/// header, `body_len` u32 and `header_count` u32.
pub const PUT_OVERHEAD: usize = 32 + 4 + 4;
/// Bytes of a Take record (header + segment u32 + offset u64).
pub const TAKE_RECORD: usize = 32 + 12;
/// Bytes of a Commit marker (header + count u32).
pub const COMMIT_RECORD: usize = 32 + 4;

/// How a `harness = false` bench program was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// By `cargo bench` (which passes `--bench`): measure.
    Bench,
    /// By `cargo test --benches` or `--all-targets` (no `--bench`): a seconds-long smoke run
    /// with tiny sizes, to check that the program still works.
    Smoke,
    /// Asked for its test list (`--list`, as cargo-nextest does): it has none.
    List,
}

/// The [`Mode`] from the command line.
pub fn mode() -> Mode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        Mode::List
    } else if args.iter().any(|a| a == "--bench") {
        Mode::Bench
    } else {
        Mode::Smoke
    }
}

/// Where benchmark data goes: `TIDEGATE_BENCH_DIR`, else `CARGO_TARGET_TMPDIR` (set by cargo
/// for benches, under `target/`), else the current directory. Never `/tmp`, which may be tmpfs.
pub fn bench_root() -> PathBuf {
    let root = std::env::var_os("TIDEGATE_BENCH_DIR")
        .or_else(|| option_env!("CARGO_TARGET_TMPDIR").map(Into::into))
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    std::fs::create_dir_all(&root).expect("creating the bench directory");
    root
}

/// A fresh directory under [`bench_root`], removed on drop.
pub fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("tidegate-bench-")
        .tempdir_in(bench_root())
        .expect("creating a temporary directory for the benchmark")
}

/// The channel configuration the benchmarks use: defaults (fsync = always, 128 MiB segments,
/// 30 s checkpoints) except a large capacity and a 1 MiB free-space floor.
pub fn config(dir: &Path) -> FileChannelConfig {
    FileChannelConfig::new(dir.join("checkpoint"), vec![dir.join("data")])
        .minimum_required_space(1 << 20)
        .capacity(1 << 40)
}

/// Opens a channel. (The log preallocates its next segment in the background once the active
/// one is half full; nothing to wait for at open.)
pub fn open(cfg: FileChannelConfig) -> FileChannel {
    FileChannel::open(cfg).expect("opening the channel")
}

/// Number of `segment-*.log` files in `dir` (finished segments, not `.tmp` ones).
pub fn segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("segment-") && n.ends_with(".log"))
                .count()
        })
        .unwrap_or(0)
}

/// Waits until no `segment-*.log.tmp` is being written in `dir`: the background preallocation
/// of a spare segment (128 MiB of zeros and a sync) that an untimed fill started must not land
/// in the timed part of a benchmark.
pub fn wait_for_preallocation(dir: &Path) {
    std::thread::sleep(Duration::from_millis(5));
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let busy = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .any(|n| n.ends_with(".tmp"))
            })
            .unwrap_or(false);
        if !busy {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An event with a `size`-byte body (a non-zero pattern) and no headers.
pub fn event(size: usize) -> Event {
    Event::new((0..size).map(|i| (i % 251) as u8 + 1).collect::<Vec<u8>>())
}

/// Puts `n` events as transactions of `batch` (the last one may be shorter).
pub fn put_n(ch: &FileChannel, ev: &Event, n: u64, batch: usize) {
    let mut left = n;
    while left > 0 {
        let k = left.min(batch as u64);
        let mut tx = ch.transaction();
        for _ in 0..k {
            tx.put(ev.clone()).map_err(|e| e.error).expect("put");
        }
        tx.commit().expect("put commit");
        left -= k;
    }
}

/// Takes and commits everything queued, in transactions of up to `batch`. Returns the count.
pub fn drain(ch: &FileChannel, batch: usize) -> u64 {
    let mut n = 0;
    loop {
        let mut tx = ch.transaction();
        let evs = tx.take_batch(batch, Duration::ZERO).expect("take");
        if evs.is_empty() {
            tx.commit().expect("empty commit");
            return n;
        }
        n += evs.len() as u64;
        std::hint::black_box(&evs);
        tx.commit().expect("take commit");
    }
}

/// The raw baseline's preallocated file ([`tidegate::bench::baseline::RawFile`], the one
/// implementation `tidegate bench` uses too), with I/O errors turned into panics: a failed
/// write is a failed benchmark run.
pub struct RawFile(baseline::RawFile);

impl RawFile {
    /// Creates `path` with `size` bytes of zeros and syncs it.
    pub fn create(path: &Path, size: u64) -> RawFile {
        RawFile(baseline::RawFile::create(path, size).expect("creating the raw baseline file"))
    }

    /// Writes `buf` at the current position (wrapping to 0 when it does not fit) and
    /// `fdatasync`s it.
    pub fn write_sync(&mut self, buf: &[u8]) {
        self.0.write_sync(buf).expect("raw write + fdatasync");
    }

    /// Appends `buf` at the end of the file (which grows; no wrapping) and `fdatasync`s it.
    pub fn append_sync(&mut self, buf: &[u8]) {
        self.0.append_sync(buf).expect("raw append + fdatasync");
    }

    /// Writes `buf` at the current position without syncing.
    pub fn write(&mut self, buf: &[u8]) {
        self.0.write(buf).expect("raw write");
    }

    /// Reads `buf.len()` bytes at the current read position `*pos` (wrapping likewise).
    pub fn read(&self, buf: &mut [u8], pos: &mut u64) {
        self.0.read(buf, pos).expect("raw read");
    }

    /// `fdatasync`.
    pub fn sync(&self) {
        self.0.sync().expect("fdatasync");
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        self.0.file()
    }
}

/// Runs the shared `disk-regime` script on `dir` (found as [`DiskRegimeTool::find`] says) and
/// returns its line.
pub fn disk_regime(dir: &Path) -> String {
    match DiskRegimeTool::find() {
        Some(tool) => tool.probe(dir),
        None => "regime=unknown (no disk-regime script found)".into(),
    }
}

/// The quick in-process regime probe ([`tidegate::bench::regime::QuickProbe`]: 50 x 4 KiB
/// overwrite + `fdatasync`), panicking on I/O errors.
pub struct QuickProbe(regime::QuickProbe);

impl QuickProbe {
    /// Creates the probe's 1 MiB file in `dir`.
    pub fn new(dir: &Path) -> QuickProbe {
        QuickProbe(regime::QuickProbe::new(&dir.join("regime-probe")).expect("creating the probe"))
    }

    /// Median `write + fdatasync` latency in microseconds.
    pub fn p50_us(&mut self) -> f64 {
        self.0.p50_us().expect("regime probe")
    }

    /// "fast" or "throttled", from a median latency.
    pub fn label(p50_us: f64) -> &'static str {
        regime::QuickProbe::label(p50_us)
    }
}

/// Median, minimum and maximum of `xs` (which must not be empty).
pub fn median_min_max(xs: &[f64]) -> (f64, f64, f64) {
    let s = Spread::of(xs).expect("no figures to summarise");
    (s.median, s.min, s.max)
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `RssAnon`, `RssFile`...).
pub fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .unwrap_or(0)
}

/// Files (relative names) under `dir`, recursively.
pub fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Removes every file under `dir` that is not in `keep` (what a reopen added: spare segments).
pub fn remove_new_files(dir: &Path, keep: &[PathBuf]) {
    for p in snapshot_files(dir) {
        if keep.binary_search(&p).is_err() {
            std::fs::remove_file(&p).expect("removing a file the reopen added");
        }
    }
}

/// A replay fixture: `n` queued events of `size` bytes, with or without a checkpoint.
pub struct ReplayFixture {
    pub dir: TempDir,
    pub files: Vec<PathBuf>,
    pub events: u64,
}

impl ReplayFixture {
    /// Puts `n` events in transactions of 1,000 and closes the channel, writing a checkpoint
    /// at close or not. Background checkpoints are pushed out to an hour.
    pub fn build(n: u64, size: usize, checkpoint: bool) -> ReplayFixture {
        let dir = tempdir();
        let cfg = config(dir.path())
            .checkpoint_interval(Duration::from_secs(3600))
            .checkpoint_on_close(checkpoint);
        let ch = open(cfg);
        put_n(&ch, &event(size), n, 1000);
        ch.close().expect("close");
        drop(ch);
        let files = snapshot_files(dir.path());
        ReplayFixture {
            dir,
            files,
            events: n,
        }
    }

    /// The configuration a reopen uses: small spare segments (the spare is created after
    /// `open` returns, so its size does not change the time measured, only the cleanup cost)
    /// and no checkpoint at close, so the fixture stays as built.
    pub fn reopen_config(&self) -> FileChannelConfig {
        config(self.dir.path())
            .checkpoint_interval(Duration::from_secs(3600))
            .checkpoint_on_close(false)
            .max_event_size(64 << 10)
            .max_segment_size(1 << 20)
    }

    /// Times one `FileChannel::open`, then closes the channel and removes what it added.
    pub fn time_open(&self) -> Duration {
        let cfg = self.reopen_config();
        let t = Instant::now();
        let ch = FileChannel::open(cfg).expect("reopen");
        let took = t.elapsed();
        let restored = ch.recovery_report().events_restored;
        assert_eq!(
            restored, self.events,
            "replay restored the wrong number of events"
        );
        ch.close().expect("close after reopen");
        drop(ch);
        remove_new_files(self.dir.path(), &self.files);
        took
    }

    /// Bytes of log records in the fixture's segments (what a full replay reads).
    pub fn log_bytes(&self) -> u64 {
        let cfg = self.reopen_config();
        let ch = FileChannel::open(cfg).expect("reopen");
        let n = ch.recovery_report().bytes_scanned;
        ch.close().expect("close after reopen");
        drop(ch);
        remove_new_files(self.dir.path(), &self.files);
        n
    }

    /// The raw baseline: reads the first `bytes` bytes of the segment files, in order, with
    /// 1 MiB `read`s (the page cache is as warm as for the engine's reopen).
    pub fn raw_read(&self, bytes: u64) -> Duration {
        let data = self.dir.path().join("data");
        let mut segs: Vec<PathBuf> = self
            .files
            .iter()
            .filter(|p| p.starts_with(&data) && p.extension().is_some_and(|e| e == "log"))
            .cloned()
            .collect();
        segs.sort();
        let mut buf = vec![0u8; 1 << 20];
        let t = Instant::now();
        let mut left = bytes;
        for p in &segs {
            if left == 0 {
                break;
            }
            let f = File::open(p).expect("opening a segment");
            let len = f.metadata().expect("segment metadata").len();
            let mut off = 0;
            while off < len && left > 0 {
                let n = (len - off).min(buf.len() as u64).min(left) as usize;
                f.read_exact_at(&mut buf[..n], off)
                    .expect("reading a segment");
                std::hint::black_box(&buf);
                off += n as u64;
                left -= n as u64;
            }
        }
        t.elapsed()
    }
}
