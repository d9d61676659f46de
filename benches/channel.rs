//! Criterion benchmarks of the file channel, each group with raw baselines measured in the same
//! group on the same disk (docs/benchmarks.md has the method, the figures and how to read them).
//!
//! - `put_commit/{512B,4KiB}`: one put transaction of `batch` events, fsync = always (`engine`),
//!   against `raw`: `pwrite` + `fdatasync` of the same body bytes, in the same batches, into a
//!   preallocated (zero-filled, synced) 256 MiB file overwritten in place, and `raw_append`: the
//!   same into a file that grows (what a log that must keep new bytes pays once the volume
//!   outgrows any ring).
//! - `take_commit/{512B,4KiB}`: one take transaction of `batch` events (`engine`), against
//!   `raw`: `pread` of the same bytes plus a durable acknowledgement (`pwrite` of as many bytes
//!   as the engine's Take and Commit records, + `fdatasync`) into a preallocated file.
//! - `producers_batch10_512B`: 1 and 4 threads committing 10 x 512 B each (group commit),
//!   against 1 and 4 threads doing raw write + `fdatasync` of 5 KiB each.
//! - `replay_100k_512B`: `FileChannel::open` of 100,000 queued events with a checkpoint and
//!   without one (full replay), against a raw sequential read of the log bytes. With
//!   `TIDEGATE_BENCH_BIG=1`, 1,000,000 events.
//!
//! Data goes to a temporary directory under `TIDEGATE_BENCH_DIR`, `CARGO_TARGET_TMPDIR` or `.`.
//! `cargo bench --bench channel` takes about 5 minutes.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tempfile::TempDir;
use tidegate::FileChannel;

use common::{COMMIT_RECORD, RawFile, ReplayFixture, TAKE_RECORD};

const SIZES: [(usize, &str); 2] = [(512, "512B"), (4096, "4KiB")];
const BATCHES: [usize; 4] = [1, 10, 100, 1000];
/// Size of the preallocated raw baseline files.
const RAW_FILE: u64 = 256 << 20;
/// Events per transaction when a benchmark fills the queue (untimed).
const FILL_BATCH: usize = 10_000;

/// A channel in its own temporary directory, created on first use (so a filtered-out
/// benchmark costs nothing).
#[derive(Default)]
struct Lazy {
    inner: Option<(TempDir, FileChannel)>,
}

impl Lazy {
    fn get(&mut self) -> (&TempDir, &FileChannel) {
        let (dir, ch) = self.inner.get_or_insert_with(|| {
            let dir = common::tempdir();
            let ch = common::open(common::config(dir.path()).checkpoint_on_close(false));
            (dir, ch)
        });
        (dir, ch)
    }

    /// Closes the channel and removes its directory; returns its final stats.
    fn finish(&mut self) -> Option<tidegate::ChannelStats> {
        let (dir, ch) = self.inner.take()?;
        let stats = ch.stats();
        ch.close().expect("close");
        drop(ch);
        drop(dir);
        Some(stats)
    }
}

fn put_commit(c: &mut Criterion) {
    for (size, label) in SIZES {
        let mut raw_dir: Option<(TempDir, RawFile)> = None;
        let ev = common::event(size);
        let mut g = c.benchmark_group(format!("put_commit/{label}"));
        for batch in BATCHES {
            g.throughput(Throughput::Elements(batch as u64));
            let mut lazy = Lazy::default();
            g.bench_with_input(BenchmarkId::new("engine", batch), &batch, |b, &batch| {
                let (_, ch) = lazy.get();
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        let mut tx = ch.transaction();
                        for _ in 0..batch {
                            tx.put(ev.clone()).map_err(|e| e.error).expect("put");
                        }
                        tx.commit().expect("commit");
                    }
                    t.elapsed()
                });
            });
            lazy.finish();
            let bytes = vec![7u8; size * batch];
            g.bench_with_input(BenchmarkId::new("raw", batch), &batch, |b, _| {
                let (_, raw) = raw_dir.get_or_insert_with(|| {
                    let dir = common::tempdir();
                    let raw = RawFile::create(&dir.path().join("raw"), RAW_FILE);
                    (dir, raw)
                });
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        raw.write_sync(&bytes);
                    }
                    t.elapsed()
                });
            });
            g.bench_with_input(BenchmarkId::new("raw_append", batch), &batch, |b, _| {
                let dir = common::tempdir();
                let mut f = RawFile::create(&dir.path().join("append"), 0);
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        f.append_sync(&bytes);
                    }
                    t.elapsed()
                });
            });
        }
        g.finish();
    }
}

fn take_commit(c: &mut Criterion) {
    for (size, label) in SIZES {
        let mut raw: Option<(TempDir, RawFile, RawFile)> = None;
        let ev = common::event(size);
        let mut g = c.benchmark_group(format!("take_commit/{label}"));
        for batch in BATCHES {
            g.throughput(Throughput::Elements(batch as u64));
            let mut lazy = Lazy::default();
            g.bench_with_input(BenchmarkId::new("engine", batch), &batch, |b, &batch| {
                let (dir, ch) = lazy.get();
                let data = dir.path().join("data");
                b.iter_custom(|iters| {
                    // Untimed: queue exactly what the timed loop takes, and let the spare
                    // segment this may have started finish.
                    common::put_n(ch, &ev, iters * batch as u64, FILL_BATCH);
                    common::wait_for_preallocation(&data);
                    let t = Instant::now();
                    for _ in 0..iters {
                        let mut tx = ch.transaction();
                        let evs = tx.take_batch(batch, Duration::ZERO).expect("take");
                        assert_eq!(evs.len(), batch);
                        black_box(evs);
                        tx.commit().expect("commit");
                    }
                    let took = t.elapsed();
                    // Untimed: let a checkpoint collect the segments that are now empty.
                    ch.checkpoint().expect("checkpoint");
                    took
                });
            });
            lazy.finish();
            let ack_bytes = vec![3u8; TAKE_RECORD * batch + COMMIT_RECORD];
            let mut buf = vec![0u8; size * batch];
            let mut rpos = 0;
            g.bench_with_input(BenchmarkId::new("raw", batch), &batch, |b, _| {
                let (_, data, ack) = raw.get_or_insert_with(|| {
                    let dir = common::tempdir();
                    let data = RawFile::create(&dir.path().join("raw-data"), RAW_FILE);
                    let ack = RawFile::create(&dir.path().join("raw-ack"), 64 << 20);
                    (dir, data, ack)
                });
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        data.read(&mut buf, &mut rpos);
                        black_box(&buf);
                        ack.write_sync(&ack_bytes);
                    }
                    t.elapsed()
                });
            });
        }
        g.finish();
    }
}

fn producers(c: &mut Criterion) {
    const BATCH: usize = 10;
    const SIZE: usize = 512;
    let ev = common::event(SIZE);
    let mut g = c.benchmark_group("producers_batch10_512B");
    for threads in [1usize, 4] {
        g.throughput(Throughput::Elements((threads * BATCH) as u64));
        let mut lazy = Lazy::default();
        g.bench_with_input(
            BenchmarkId::new("engine", threads),
            &threads,
            |b, &threads| {
                let (_, ch) = lazy.get();
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    std::thread::scope(|s| {
                        for _ in 0..threads {
                            s.spawn(|| {
                                for _ in 0..iters {
                                    let mut tx = ch.transaction();
                                    for _ in 0..BATCH {
                                        tx.put(ev.clone()).map_err(|e| e.error).expect("put");
                                    }
                                    tx.commit().expect("commit");
                                }
                            });
                        }
                    });
                    t.elapsed()
                });
            },
        );
        if let Some(st) = lazy.finish() {
            eprintln!(
                "producers_batch10_512B/engine/{threads}: {} fsyncs for {} commits ({:.3} per commit)",
                st.fsyncs,
                st.commits,
                st.fsyncs as f64 / st.commits.max(1) as f64
            );
        }

        // Raw: each thread writes 5 KiB into its own region of one preallocated file and
        // calls fdatasync itself (no coordination between threads).
        let bytes = vec![7u8; SIZE * BATCH];
        g.bench_with_input(BenchmarkId::new("raw", threads), &threads, |b, &threads| {
            let dir = common::tempdir();
            let raw = RawFile::create(&dir.path().join("raw"), RAW_FILE);
            let region = RAW_FILE / threads as u64;
            let next = AtomicU64::new(0);
            b.iter_custom(|iters| {
                let t = Instant::now();
                std::thread::scope(|s| {
                    for i in 0..threads as u64 {
                        let (raw, bytes, next) = (&raw, &bytes, &next);
                        s.spawn(move || {
                            use std::os::unix::fs::FileExt;
                            let len = bytes.len() as u64;
                            for _ in 0..iters {
                                let k = next.fetch_add(1, Ordering::Relaxed);
                                let off = i * region + (k * len) % (region - len);
                                raw.file().write_all_at(bytes, off).expect("raw write");
                                raw.sync();
                            }
                        });
                    }
                });
                t.elapsed()
            });
        });
    }
    g.finish();
}

fn replay(c: &mut Criterion) {
    let big = std::env::var("TIDEGATE_BENCH_BIG").is_ok_and(|v| v == "1");
    let (n, label) = if big {
        (1_000_000, "replay_1M_512B")
    } else {
        (100_000, "replay_100k_512B")
    };
    let mut with_ckpt: Option<ReplayFixture> = None;
    let mut without: Option<(ReplayFixture, u64)> = None;
    let mut g = c.benchmark_group(label);
    g.throughput(Throughput::Elements(n));
    g.bench_function("open_checkpoint", |b| {
        let f = with_ckpt.get_or_insert_with(|| ReplayFixture::build(n, 512, true));
        b.iter_custom(|iters| (0..iters).map(|_| f.time_open()).sum());
    });
    fn fixture(slot: &mut Option<(ReplayFixture, u64)>, n: u64) -> &(ReplayFixture, u64) {
        slot.get_or_insert_with(|| {
            let f = ReplayFixture::build(n, 512, false);
            let bytes = f.log_bytes();
            (f, bytes)
        })
    }
    g.bench_function("open_full_replay", |b| {
        let (f, _) = fixture(&mut without, n);
        b.iter_custom(|iters| (0..iters).map(|_| f.time_open()).sum());
    });
    g.bench_function("raw_read", |b| {
        let (f, bytes) = fixture(&mut without, n);
        b.iter_custom(|iters| (0..iters).map(|_| f.raw_read(*bytes)).sum());
    });
    g.finish();
}

/// Prints the disk regime (disk-limits.md) before the groups run...
fn regime_before(_: &mut Criterion) {
    eprintln!(
        "disk regime before: {}",
        common::disk_regime(&common::bench_root())
    );
}

/// ...and after.
fn regime_after(_: &mut Criterion) {
    eprintln!(
        "disk regime after: {}",
        common::disk_regime(&common::bench_root())
    );
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
}

criterion_group! {
    name = benches;
    config = config();
    targets = regime_before, put_commit, take_commit, producers, replay, regime_after
}
criterion_main!(benches);
