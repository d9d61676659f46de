//! tidegate against its peers at equal durability, on one workload: batches of 100 x 512 B,
//! each batch durable before the next (docs/benchmarks.md, "Peers").
//!
//! - `tidegate`: a [`FileChannel`], fsync = always (a commit returns after `fdatasync`),
//!   checkpointing every second in the background (collected segments are then reused).
//! - `okaywal` 0.3: one entry of 100 chunks per batch; `EntryWriter::commit` flushes and
//!   `fdatasync`s. Segments preallocated to 64 MiB (checkpoint after 48 MiB) so it is not
//!   held back by its 1 MiB default; its log manager discards checkpointed entries. okaywal has
//!   no take: it is a log, read back only at recovery.
//! - `yaque` 0.6: `Sender::try_send_batch` of the 100 events, then an `fdatasync` of the
//!   segment file it wrote (yaque never syncs by itself; we open its current segment, `{n}.q`,
//!   and sync that, plus the directory when it starts a new segment). Take:
//!   `Receiver::try_recv_batch(100)` + commit, then `save()` of its read position and an
//!   `fdatasync` of that file (`recv-metadata`), so a taken batch stays taken after a power loss.
//! - `memory`: tidegate's [`MemoryChannel`], no durability: the ceiling.
//! - `raw`: `pwrite` + `fdatasync` of the same 51,200 bytes into a preallocated file (the
//!   baseline `tidegate bench` uses); for take, a `pread` of them plus a durable acknowledgement
//!   as large as tidegate's Take and Commit records.
//!
//! Two parts. The criterion groups `peers/put_commit` and `peers/take_commit` (one batch per
//! iteration; criterion runs them one after another). Then, because this disk's flush latency
//! drifts 10-30x between regimes, an interleaved comparison: rounds of `TIDEGATE_PEERS_EVENTS`
//! (default 50,000) events through each system in turn, A B C D E, A B C D E, ..., each round
//! bracketed by a 50-sync regime probe, reporting per-round ratios (median [min-max]) over
//! `TIDEGATE_PEERS_ROUNDS` rounds (default 15), over all rounds and over the rounds of each
//! regime. The ratio tidegate / okaywal is the goal's figure (at least 1.3).
//!
//! Run with `cargo bench --bench peers` (`-- --skip-criterion` for the interleaved part only).
#![expect(
    clippy::unwrap_used,
    reason = "a benchmark program: a panic is a failed run"
)]

mod common;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use okaywal::{Configuration, LogVoid, WriteAheadLog};
use tidegate::{Channel, Event, FileChannel, MemoryChannel, MemoryChannelConfig};

use common::{COMMIT_RECORD, RawFile, TAKE_RECORD};

const SIZE: usize = 512;
const BATCH: usize = 100;

/// A system under test: puts a batch durably; takes a batch durably if it can.
trait Peer {
    fn name(&self) -> &'static str;
    /// Puts `BATCH` events and returns once they are durable.
    fn put_batch(&mut self);
    /// Takes up to `BATCH` events durably; `None` when the system has no take.
    fn take_batch(&mut self) -> Option<usize>;
}

struct Tidegate<C: Channel> {
    name: &'static str,
    ch: C,
    ev: Event,
}

impl<C: Channel> Peer for Tidegate<C> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn put_batch(&mut self) {
        let mut tx = self.ch.transaction();
        for _ in 0..BATCH {
            tx.put(self.ev.clone()).map_err(|e| e.error).unwrap();
        }
        tx.commit().unwrap();
    }

    fn take_batch(&mut self) -> Option<usize> {
        let mut tx = self.ch.transaction();
        let n = tx.take_batch(BATCH, Duration::ZERO).unwrap().len();
        tx.commit().unwrap();
        Some(n)
    }
}

fn tidegate_file(dir: &Path) -> Tidegate<FileChannel> {
    Tidegate {
        name: "tidegate",
        // Checkpoints every second (the shortest interval), as okaywal checkpoints every 48 MiB
        // on its own: each collects the segments the takes emptied, which the log then reuses.
        ch: common::open(
            common::config(dir)
                .checkpoint_on_close(false)
                .checkpoint_interval(Duration::from_secs(1)),
        ),
        ev: common::event(SIZE),
    }
}

fn tidegate_memory() -> Tidegate<MemoryChannel> {
    Tidegate {
        name: "memory",
        ch: MemoryChannel::new(MemoryChannelConfig {
            capacity: 1 << 40,
            ..MemoryChannelConfig::default()
        }),
        ev: common::event(SIZE),
    }
}

struct OkayWal {
    wal: WriteAheadLog,
    body: Vec<u8>,
}

impl OkayWal {
    fn open(dir: &Path) -> OkayWal {
        let wal = Configuration::default_for(dir.join("okaywal"))
            .preallocate_bytes(64 << 20)
            .checkpoint_after_bytes(48 << 20)
            .open(LogVoid)
            .unwrap();
        OkayWal {
            wal,
            body: vec![7u8; SIZE],
        }
    }
}

impl Peer for OkayWal {
    fn name(&self) -> &'static str {
        "okaywal"
    }

    fn put_batch(&mut self) {
        let mut entry = self.wal.begin_entry().unwrap();
        for _ in 0..BATCH {
            entry.write_chunk(&self.body).unwrap();
        }
        entry.commit().unwrap();
    }

    fn take_batch(&mut self) -> Option<usize> {
        None
    }
}

/// yaque with the syncs it lacks (see the module docs).
struct Yaque {
    dir: PathBuf,
    sender: yaque::Sender,
    receiver: yaque::Receiver,
    /// The segment the sender writes and an open handle to sync it.
    segment: (u64, File),
    body: Vec<u8>,
    batch: Vec<Vec<u8>>,
}

impl Yaque {
    fn open(dir: &Path) -> Yaque {
        let dir = dir.join("yaque");
        let (sender, receiver) = yaque::channel(&dir).unwrap();
        let first = Self::newest_segment(&dir);
        Yaque {
            segment: (first, File::open(dir.join(format!("{first}.q"))).unwrap()),
            dir,
            sender,
            receiver,
            body: vec![7u8; SIZE],
            batch: vec![vec![7u8; SIZE]; BATCH],
        }
    }

    fn newest_segment(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".q")?.parse().ok()
            })
            .max()
            .unwrap()
    }

    /// Syncs what the last send wrote: the current segment, and when the sender moved on to
    /// a new one, the old one (its end-of-segment marker), the new one and the directory.
    fn sync(&mut self) -> io::Result<()> {
        let next = self.dir.join(format!("{}.q", self.segment.0 + 1));
        if next.exists() {
            self.segment.1.sync_data()?;
            let n = Self::newest_segment(&self.dir);
            self.segment = (n, File::open(self.dir.join(format!("{n}.q")))?);
            File::open(&self.dir)?.sync_all()?;
        }
        self.segment.1.sync_data()
    }
}

impl Peer for Yaque {
    fn name(&self) -> &'static str {
        "yaque"
    }

    fn put_batch(&mut self) {
        debug_assert_eq!(self.body.len(), SIZE);
        self.sender
            .try_send_batch(self.batch.iter())
            .map_err(|e| match e {
                yaque::TrySendError::Io(e) => e,
                yaque::TrySendError::QueueFull { .. } => io::Error::other("queue full"),
            })
            .unwrap();
        self.sync().unwrap();
    }

    fn take_batch(&mut self) -> Option<usize> {
        let n = match self.receiver.try_recv_batch_up_to(BATCH) {
            Ok(guard) => {
                let n = guard.len();
                std::hint::black_box(&*guard);
                guard.commit().unwrap();
                n
            }
            Err(yaque::TryRecvError::QueueEmpty) => 0,
            Err(yaque::TryRecvError::Io(e)) => panic!("yaque recv: {e}"),
        };
        self.receiver.save().unwrap();
        File::open(self.dir.join("recv-metadata"))
            .and_then(|f| f.sync_data())
            .unwrap();
        Some(n)
    }
}

/// The raw baseline: write + fdatasync of the batch; take = read + durable ack.
struct Raw {
    data: RawFile,
    ack: RawFile,
    bytes: Vec<u8>,
    ack_bytes: Vec<u8>,
    read: Vec<u8>,
    rpos: u64,
}

impl Raw {
    fn open(dir: &Path) -> Raw {
        Raw {
            data: RawFile::create(&dir.join("raw"), 256 << 20),
            ack: RawFile::create(&dir.join("ack"), 64 << 20),
            bytes: vec![7u8; SIZE * BATCH],
            ack_bytes: vec![3u8; TAKE_RECORD * BATCH + COMMIT_RECORD],
            read: vec![0u8; SIZE * BATCH],
            rpos: 0,
        }
    }
}

impl Peer for Raw {
    fn name(&self) -> &'static str {
        "raw"
    }

    fn put_batch(&mut self) {
        self.data.write_sync(&self.bytes);
    }

    fn take_batch(&mut self) -> Option<usize> {
        self.data.read(&mut self.read, &mut self.rpos);
        std::hint::black_box(&self.read);
        self.ack.write_sync(&self.ack_bytes);
        Some(BATCH)
    }
}

/// Every system, each in its own directory under `dir`.
fn systems(dir: &Path) -> Vec<Box<dyn Peer>> {
    vec![
        Box::new(tidegate_file(dir)),
        Box::new(OkayWal::open(dir)),
        Box::new(Yaque::open(dir)),
        Box::new(tidegate_memory()),
        Box::new(Raw::open(dir)),
    ]
}

fn criterion_groups(c: &mut Criterion) {
    let dir = common::tempdir();
    let mut all = systems(dir.path());
    let mut g = c.benchmark_group("peers/put_commit_batch100_512B");
    g.throughput(Throughput::Elements(BATCH as u64));
    for p in &mut all {
        g.bench_function(BenchmarkId::from_parameter(p.name()), |b| {
            b.iter(|| p.put_batch());
        });
    }
    g.finish();
    let mut g = c.benchmark_group("peers/take_commit_batch100_512B");
    g.throughput(Throughput::Elements(BATCH as u64));
    for p in &mut all {
        if p.take_batch().is_none() {
            continue;
        }
        g.bench_function(BenchmarkId::from_parameter(p.name()), |b| {
            b.iter_custom(|iters| {
                // Untimed: queue what the timed loop takes.
                for _ in 0..iters {
                    p.put_batch();
                }
                let t = Instant::now();
                for _ in 0..iters {
                    assert_eq!(p.take_batch(), Some(BATCH), "{} ran dry", p.name());
                }
                t.elapsed()
            });
        });
    }
    g.finish();
    // Whatever is left queued goes with the directory.
    drop(all);
    drop(dir);
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Rates of one round: put and take per system, in `systems` order.
type Round = Vec<(f64, Option<f64>)>;

fn round(all: &mut [Box<dyn Peer>], events: u64) -> Round {
    let batches = events / BATCH as u64;
    all.iter_mut()
        .map(|p| {
            let t = Instant::now();
            for _ in 0..batches {
                p.put_batch();
            }
            let put = events as f64 / t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut take = Some(0);
            for _ in 0..batches {
                take = p.take_batch();
                if take.is_none() {
                    break;
                }
            }
            let take = take.map(|_| events as f64 / t.elapsed().as_secs_f64());
            (put, take)
        })
        .collect()
}

fn interleaved(rounds: u64, events: u64) {
    let dir = common::tempdir();
    let mut all = systems(dir.path());
    let names: Vec<&str> = all.iter().map(|p| p.name()).collect();
    println!("disk regime before: {}", common::disk_regime(dir.path()));
    let mut probe = common::QuickProbe::new(dir.path());
    round(&mut all, events / 4); // warm-up, not recorded
    let mut results: Vec<Round> = Vec::new();
    let mut regimes: Vec<&'static str> = Vec::new();
    for r in 0..rounds {
        let before = probe.p50_us();
        let res = round(&mut all, events);
        let after = probe.p50_us();
        let regime = tidegate::bench::regime::QuickProbe::round_label(before, after);
        regimes.push(regime);
        let cells: Vec<String> = names
            .iter()
            .zip(&res)
            .map(|(n, (p, t))| match t {
                Some(t) => format!("{n} {p:.0}/{t:.0}"),
                None => format!("{n} {p:.0}/-"),
            })
            .collect();
        println!(
            "round {r} [{regime}, probe p50 {before:.0}/{after:.0} us] (put/take events/s): {}",
            cells.join(", ")
        );
        results.push(res);
    }
    println!("disk regime after: {}", common::disk_regime(dir.path()));
    let idx = |n: &str| names.iter().position(|x| *x == n).unwrap();
    let spread = |xs: Vec<f64>| {
        let (m, lo, hi) = common::median_min_max(&xs);
        format!("{m:.3} [{lo:.3}-{hi:.3}]")
    };
    println!(
        "== {rounds} interleaved rounds of {events} x {SIZE} B, batch {BATCH}: median [min-max] =="
    );
    for n in &names {
        let i = idx(n);
        let put: Vec<f64> = results.iter().map(|r| r[i].0).collect();
        let (m, lo, hi) = common::median_min_max(&put);
        let take: Vec<f64> = results.iter().filter_map(|r| r[i].1).collect();
        let take = if take.is_empty() {
            "take n/a".to_string()
        } else {
            let (tm, tlo, thi) = common::median_min_max(&take);
            format!("take {tm:.0} [{tlo:.0}-{thi:.0}]")
        };
        println!("  {n:>8}: put {m:.0} [{lo:.0}-{hi:.0}] events/s; {take}");
    }
    let ratio = |a: &str, b: &str, take: bool, only: Option<&str>| {
        let (ia, ib) = (idx(a), idx(b));
        let xs: Vec<f64> = results
            .iter()
            .zip(&regimes)
            .filter(|(_, g)| only.is_none_or(|o| o == **g))
            .filter_map(|(r, _)| {
                if take {
                    Some(r[ia].1? / r[ib].1?)
                } else {
                    Some(r[ia].0 / r[ib].0)
                }
            })
            .collect();
        if xs.is_empty() {
            "n/a".to_string()
        } else {
            spread(xs)
        }
    };
    let pairs = [
        ("tidegate", "okaywal"),
        ("tidegate", "yaque"),
        ("tidegate", "raw"),
        ("okaywal", "raw"),
        ("yaque", "raw"),
        ("memory", "tidegate"),
    ];
    let mut subsets = vec![(None, rounds as usize)];
    for g in ["fast", "throttled", "mixed"] {
        let n = regimes.iter().filter(|r| **r == g).count();
        if n > 0 {
            subsets.push((Some(g), n));
        }
    }
    for (only, n) in subsets {
        println!("  ratios over {} rounds ({n}):", only.unwrap_or("all"));
        for (a, b) in pairs {
            println!(
                "    put  {a}/{b}: {}; take {a}/{b}: {}",
                ratio(a, b, false, only),
                ratio(a, b, true, only)
            );
        }
    }
}

fn main() {
    let mode = common::mode();
    if mode == common::Mode::List {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let smoke = mode == common::Mode::Smoke;
    if !smoke && !args.iter().any(|a| a == "--skip-criterion") {
        let mut c = Criterion::default()
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(1500));
        criterion_groups(&mut c);
        c.final_summary();
    }
    if smoke {
        println!("smoke run (tiny sizes); measure with `cargo bench --bench peers`");
        interleaved(1, 1_000);
    } else {
        interleaved(
            env_u64("TIDEGATE_PEERS_ROUNDS", 15),
            env_u64("TIDEGATE_PEERS_EVENTS", 50_000) / BATCH as u64 * BATCH as u64,
        );
    }
}
