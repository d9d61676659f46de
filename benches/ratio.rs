//! The headline comparisons, measured interleaved (A, B, A, B, ...) and reported as ratios,
//! because this disk's flush latency drifts 10-30x between regimes (disk-limits.md):
//!
//! 1. engine put+commit, batch 100 x 512 B, fsync = always, vs a raw `pwrite` + `fdatasync` of
//!    the same body bytes in the same batches into a preallocated (zero-filled, synced) file;
//! 2. engine take+commit, batch 100, vs a raw `pread` of the same bytes plus a durable
//!    acknowledgement (`pwrite` of as many bytes as the engine's Take and Commit records +
//!    `fdatasync`);
//! 3. engine put+commit, batch 1000 x 4 KiB (bandwidth-bound), vs raw `pwrite` + `fdatasync` into
//!    a fresh file that grows (`raw_append`) and into the preallocated file;
//! 4. 16 producers x batch 10 vs 1 producer x batch 10 (group commit), with fsyncs per commit.
//!
//! Each round is bracketed by a 50-sync regime probe; a round whose two probes disagree is
//! "mixed". The summary gives the median [min-max] over all rounds and, when the regime
//! changed during the run, over the rounds of each regime.
//!
//! Run with `cargo bench --bench ratio`. Knobs: `TIDEGATE_RATIO_ROUNDS` (default 9, at least
//! 7), `TIDEGATE_RATIO_EVENTS` (events per put/take run, default 200,000),
//! `TIDEGATE_RATIO_BIG_EVENTS` (4 KiB events per bandwidth run, default 50,000),
//! `TIDEGATE_RATIO_PRODUCER_EVENTS` (events per producers run, default 100,000),
//! `TIDEGATE_RATIO_ONLY` (`put`, `bandwidth` or `producers`: run one section),
//! `TIDEGATE_RATIO_SEGMENT` (the put section's `max_segment_size` in bytes; one large enough for
//! the whole run means no segment is prepared while anything is timed),
//! `TIDEGATE_BENCH_DIR` (where the data goes).

mod common;

use std::time::{Duration, Instant};

use common::{COMMIT_RECORD, QuickProbe, RawFile, TAKE_RECORD, median_min_max};
use tidegate::{Event, FileChannel};

const SIZE: usize = 512;
const BATCH: usize = 100;
const PRODUCER_BATCH: usize = 10;
const BIG_SIZE: usize = 4096;
const BIG_BATCH: usize = 1000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rate(events: u64, d: Duration) -> f64 {
    events as f64 / d.as_secs_f64()
}

fn engine_put(ch: &FileChannel, ev: &Event, events: u64) -> f64 {
    let t = Instant::now();
    common::put_n(ch, ev, events, BATCH);
    rate(events, t.elapsed())
}

fn raw_put(raw: &mut RawFile, events: u64) -> f64 {
    let bytes = vec![7u8; SIZE * BATCH];
    let t = Instant::now();
    for _ in 0..events / BATCH as u64 {
        raw.write_sync(&bytes);
    }
    rate(events, t.elapsed())
}

fn engine_take(ch: &FileChannel, events: u64) -> f64 {
    let t = Instant::now();
    let mut left = events;
    while left > 0 {
        let mut tx = ch.transaction();
        let evs = tx
            .take_batch(BATCH.min(left as usize), Duration::ZERO)
            .expect("take");
        assert!(!evs.is_empty(), "the queue ran dry");
        left -= evs.len() as u64;
        std::hint::black_box(evs);
        tx.commit().expect("take commit");
    }
    rate(events, t.elapsed())
}

fn raw_take(data: &RawFile, ack: &mut RawFile, rpos: &mut u64, events: u64) -> f64 {
    let mut buf = vec![0u8; SIZE * BATCH];
    let ack_bytes = vec![3u8; TAKE_RECORD * BATCH + COMMIT_RECORD];
    let t = Instant::now();
    for _ in 0..events / BATCH as u64 {
        data.read(&mut buf, rpos);
        std::hint::black_box(&buf);
        ack.write_sync(&ack_bytes);
    }
    rate(events, t.elapsed())
}

/// `threads` producers commit `events` events in all, `PRODUCER_BATCH` per transaction.
/// Returns events/s and the fsyncs per commit of the run.
fn producers(ch: &FileChannel, ev: &Event, threads: u64, events: u64) -> (f64, f64) {
    let commits_each = events / PRODUCER_BATCH as u64 / threads;
    let before = ch.stats();
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| common::put_n(ch, ev, commits_each * PRODUCER_BATCH as u64, PRODUCER_BATCH));
        }
    });
    let took = t.elapsed();
    let after = ch.stats();
    let per_commit =
        (after.fsyncs - before.fsyncs) as f64 / (after.commits - before.commits).max(1) as f64;
    (
        rate(commits_each * threads * PRODUCER_BATCH as u64, took),
        per_commit,
    )
}

/// Brackets a round with two quick regime probes and names the round's regime.
fn regime_of(before: f64, after: f64) -> &'static str {
    match (QuickProbe::label(before), QuickProbe::label(after)) {
        ("fast", "fast") => "fast",
        ("throttled", "throttled") => "throttled",
        _ => "mixed",
    }
}

/// One comparison: A and B rates per round, and each round's regime.
struct Series {
    name: &'static str,
    a: Vec<f64>,
    b: Vec<f64>,
    regime: Vec<&'static str>,
}

impl Series {
    fn new(name: &'static str) -> Series {
        Series {
            name,
            a: Vec::new(),
            b: Vec::new(),
            regime: Vec::new(),
        }
    }

    fn push(&mut self, a: f64, b: f64, regime: &'static str) {
        self.a.push(a);
        self.b.push(b);
        self.regime.push(regime);
    }

    fn report(&self, a_label: &str, b_label: &str) {
        if self.a.is_empty() {
            return;
        }
        let mut subsets: Vec<(&str, Vec<usize>)> = vec![("all", (0..self.a.len()).collect())];
        for r in ["fast", "throttled", "mixed"] {
            let idx: Vec<usize> = (0..self.a.len()).filter(|&i| self.regime[i] == r).collect();
            if !idx.is_empty() && idx.len() < self.a.len() {
                subsets.push((r, idx));
            }
        }
        let only = if subsets.len() == 1 {
            format!(" (every round {})", self.regime[0])
        } else {
            String::new()
        };
        println!("{}{only}:", self.name);
        for (label, idx) in subsets {
            let pick = |v: &[f64]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
            let (a, b) = (pick(&self.a), pick(&self.b));
            let ratios: Vec<f64> = a.iter().zip(&b).map(|(a, b)| a / b).collect();
            let (rm, rmin, rmax) = median_min_max(&ratios);
            let (am, amin, amax) = median_min_max(&a);
            let (bm, bmin, bmax) = median_min_max(&b);
            println!(
                "  {label} rounds ({}): {a_label}/{b_label} = {rm:.3} [{rmin:.3}-{rmax:.3}]; \
                 {a_label} {am:.0}/s [{amin:.0}-{amax:.0}]; {b_label} {bm:.0}/s [{bmin:.0}-{bmax:.0}]",
                ratios.len()
            );
        }
    }
}

fn main() {
    let mode = common::mode();
    if mode == common::Mode::List {
        return;
    }
    let smoke = mode == common::Mode::Smoke;
    let (rounds, events, big_events, producer_events) = if smoke {
        println!("smoke run (tiny sizes); measure with `cargo bench --bench ratio`");
        (1, 1_000, 2_000, 1_600)
    } else {
        (
            env_u64("TIDEGATE_RATIO_ROUNDS", 9).max(7),
            env_u64("TIDEGATE_RATIO_EVENTS", 200_000) / BATCH as u64 * BATCH as u64,
            env_u64("TIDEGATE_RATIO_BIG_EVENTS", 50_000) / BIG_BATCH as u64 * BIG_BATCH as u64,
            env_u64("TIDEGATE_RATIO_PRODUCER_EVENTS", 100_000),
        )
    };
    let only = std::env::var("TIDEGATE_RATIO_ONLY").unwrap_or_default();
    let root = common::bench_root();
    let regime = |when: &str| {
        if !smoke {
            println!("{when}: {}", common::disk_regime(&root));
        }
    };
    regime("before");
    let probe_dir = common::tempdir();
    let mut probe = QuickProbe::new(probe_dir.path());

    // 1 and 2: put and take at batch 100 x 512 B.
    let mut put = Series::new("put+commit batch 100 x 512 B, engine vs raw (preallocated)");
    let mut take = Series::new("take+commit batch 100 x 512 B, engine vs raw (read + ack)");
    let mut put_fsyncs = Vec::new();
    if only.is_empty() || only == "put" {
        let dir = common::tempdir();
        println!("data in {}", dir.path().display());
        let ev = common::event(SIZE);
        let mut cfg = common::config(dir.path()).checkpoint_on_close(false);
        if let Ok(v) = std::env::var("TIDEGATE_RATIO_SEGMENT") {
            cfg = cfg.max_segment_size(v.parse().expect("TIDEGATE_RATIO_SEGMENT: bytes"));
        }
        let ch = common::open(cfg);
        let mut raw = RawFile::create(&dir.path().join("raw"), 256 << 20);
        let mut ack = RawFile::create(&dir.path().join("ack"), 64 << 20);
        let mut rpos = 0;
        // Warm-up, not recorded.
        engine_put(&ch, &ev, events / 4);
        raw_put(&mut raw, events / 4);
        engine_take(&ch, events / 4);
        raw_take(&raw, &mut ack, &mut rpos, events / 4);
        for r in 0..rounds {
            let p0 = probe.p50_us();
            let s0 = ch.stats();
            let e_put = engine_put(&ch, &ev, events);
            let s1 = ch.stats();
            let r_put = raw_put(&mut raw, events);
            let e_take = engine_take(&ch, events);
            let r_take = raw_take(&raw, &mut ack, &mut rpos, events);
            let p1 = probe.p50_us();
            let regime = regime_of(p0, p1);
            put_fsyncs.push((s1.fsyncs - s0.fsyncs) as f64 / (s1.commits - s0.commits) as f64);
            println!(
                "round {r} [{regime}, probe p50 {p0:.0}/{p1:.0} us]: put engine {e_put:.0}/s \
                 raw {r_put:.0}/s ({:.3}); take engine {e_take:.0}/s raw {r_take:.0}/s ({:.3})",
                e_put / r_put,
                e_take / r_take,
            );
            put.push(e_put, r_put, regime);
            take.push(e_take, r_take, regime);
            // Untimed: collect the segments the takes emptied.
            ch.checkpoint().expect("checkpoint");
        }
        ch.close().expect("close");
    }

    // 3: bandwidth-bound commits. The raw ring overwrites a hot 256 MiB file; a log keeps new
    // bytes, so `raw_append` (a fresh file that grows) is the fairer floor here.
    let mut big_append = Series::new("put+commit batch 1000 x 4 KiB, engine vs raw_append");
    let mut big_ring = Series::new("put+commit batch 1000 x 4 KiB, engine vs raw (preallocated)");
    if only.is_empty() || only == "bandwidth" {
        let dir = common::tempdir();
        let ev = common::event(BIG_SIZE);
        let ch = common::open(common::config(dir.path()).checkpoint_on_close(false));
        let mut raw = RawFile::create(&dir.path().join("raw"), 256 << 20);
        let bytes = vec![7u8; BIG_SIZE * BIG_BATCH];
        let run_raw = |f: &mut RawFile, append: bool| {
            let t = Instant::now();
            for _ in 0..big_events / BIG_BATCH as u64 {
                if append {
                    f.append_sync(&bytes);
                } else {
                    f.write_sync(&bytes);
                }
            }
            rate(big_events, t.elapsed())
        };
        for r in 0..rounds {
            let p0 = probe.p50_us();
            let t = Instant::now();
            common::put_n(&ch, &ev, big_events, BIG_BATCH);
            let e = rate(big_events, t.elapsed());
            // Untimed: empty the queue and let a checkpoint delete the segments.
            common::drain(&ch, 1000);
            ch.checkpoint().expect("checkpoint");
            let path = dir.path().join("append");
            let mut append = RawFile::create(&path, 0);
            let a = run_raw(&mut append, true);
            drop(append);
            std::fs::remove_file(&path).expect("removing the append file");
            let w = run_raw(&mut raw, false);
            let p1 = probe.p50_us();
            let regime = regime_of(p0, p1);
            println!(
                "round {r} [{regime}]: 4 KiB x 1000: engine {e:.0}/s, raw_append {a:.0}/s \
                 ({:.3}), raw {w:.0}/s ({:.3})",
                e / a,
                e / w
            );
            big_append.push(e, a, regime);
            big_ring.push(e, w, regime);
        }
        ch.close().expect("close");
    }

    // 4: group commit.
    let mut prod = Series::new("batch 10 x 512 B, 16 producers vs 1 producer");
    let (mut f16, mut f1) = (Vec::new(), Vec::new());
    if only.is_empty() || only == "producers" {
        let dir = common::tempdir();
        let ev = common::event(SIZE);
        let ch = common::open(common::config(dir.path()).checkpoint_on_close(false));
        common::put_n(&ch, &ev, producer_events / 4, PRODUCER_BATCH); // warm-up
        common::drain(&ch, 1000);
        for r in 0..rounds {
            let p0 = probe.p50_us();
            let (e16, per16) = producers(&ch, &ev, 16, producer_events);
            common::drain(&ch, 1000);
            let (e1, per1) = producers(&ch, &ev, 1, producer_events);
            common::drain(&ch, 1000);
            let p1 = probe.p50_us();
            let regime = regime_of(p0, p1);
            ch.checkpoint().expect("checkpoint");
            println!(
                "round {r} [{regime}]: 16 producers {e16:.0}/s ({per16:.3} fsyncs/commit), \
                 1 producer {e1:.0}/s ({per1:.3} fsyncs/commit), ratio {:.3}",
                e16 / e1
            );
            prod.push(e16, e1, regime);
            f16.push(per16);
            f1.push(per1);
        }
        ch.close().expect("close");
    }

    println!();
    regime("after");
    println!("== summary: median [min-max] over {rounds} interleaved rounds ==");
    put.report("engine", "raw");
    if !put_fsyncs.is_empty() {
        let (m, lo, hi) = median_min_max(&put_fsyncs);
        println!("  engine fsyncs per commit: {m:.3} [{lo:.3}-{hi:.3}]");
    }
    take.report("engine", "raw");
    big_append.report("engine", "raw_append");
    big_ring.report("engine", "raw");
    prod.report("16p", "1p");
    if !f16.is_empty() {
        let (m, lo, hi) = median_min_max(&f16);
        println!("  16 producers: {m:.3} fsyncs per commit [{lo:.3}-{hi:.3}]");
        let (m, lo, hi) = median_min_max(&f1);
        println!("  1 producer: {m:.3} fsyncs per commit [{lo:.3}-{hi:.3}]");
    }
}
