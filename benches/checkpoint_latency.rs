//! Does a running checkpoint stall commits? Goal: a checkpoint of 1 M queued events raises the
//! p99 put+commit latency by at most 2x.
//!
//! Preloads a channel with `TIDEGATE_BENCH_QUEUED` (default 1,000,000) queued 512 B events, then
//! measures the latency of put+commit transactions (batch 10 x 512 B, fsync = always) in rounds
//! of two modes: B, a second thread asking for checkpoints back to back (the channel's
//! checkpointer thread writes them), until two whole checkpoints and at least 1,000 commits are
//! done; A, the same number of commits with no checkpoint running; the order alternates by
//! round. Reports p50/p99/max per mode and the ratio of B's p99 to A's p99 per round (median, min, max).
//! Run: `cargo bench --bench checkpoint_latency`. `TIDEGATE_CHECKPOINT_WRITE_RATE` sets the
//! channel's `checkpoint_write_rate` in bytes/s (0: unpaced; unset: the default, 16 MiB/s);
//! `TIDEGATE_CHECKPOINT_PERIOD_MS` starts checkpoints at that period instead of back to back,
//! to compare paced and unpaced checkpoints at the same frequency.
#![allow(missing_docs, reason = "a benchmark program")]
#![expect(
    clippy::unwrap_used,
    reason = "a benchmark program: a panic is a failed run"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let queued: u64 = std::env::var("TIDEGATE_BENCH_QUEUED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = std::env::var("TIDEGATE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let commits_per_round = 1000;
    let dir = common::tempdir();
    println!("disk regime before: {}", common::disk_regime(dir.path()));
    // Checkpoints start every `TIDEGATE_CHECKPOINT_PERIOD_MS` (when one outlasts the period, the
    // next starts at once); unset, back to back.
    let period = std::env::var("TIDEGATE_CHECKPOINT_PERIOD_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis);
    let mut cfg = common::config(dir.path());
    if let Some(rate) = std::env::var("TIDEGATE_CHECKPOINT_WRITE_RATE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        cfg = cfg.checkpoint_write_rate(Some(rate).filter(|r| *r > 0));
    }
    println!(
        "checkpoint_write_rate: {}",
        std::env::var("TIDEGATE_CHECKPOINT_WRITE_RATE").unwrap_or_else(|_| "default".into())
    );
    let ch = common::open(cfg);
    let ev = common::event(512);
    let t = Instant::now();
    common::put_n(&ch, &ev, queued, 1000);
    println!(
        "preloaded {queued} events in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    ch.checkpoint().unwrap();

    let mut all = [Vec::new(), Vec::new()];
    // Mode B's commits that overlapped a running checkpoint (it was running when the commit
    // started or when it returned): what "a running checkpoint" does to a commit, whatever the
    // share of time checkpoints run.
    let mut overlapped = Vec::new();
    let mut overlap_ratios = Vec::new();
    let running = Arc::new(AtomicBool::new(false));
    let mut ratios = Vec::new();
    let checkpoints = Arc::new(AtomicU64::new(0));
    let mut ckpt_ms = Vec::new();
    // Mode B's commits go on until two whole checkpoints have been written beside them (a paced
    // checkpoint takes far longer than 1,000 commits) and at least `count` commits are done;
    // mode A runs `count` commits, the number B needed last. Round 0 runs B first (to learn
    // `count`), later rounds alternate the order.
    let mut count = commits_per_round;
    for round in 0..rounds {
        let mut p99 = [Duration::ZERO; 2];
        let mut p99_during = None;
        let order = if round % 2 == 0 {
            [(1, true), (0, false)]
        } else {
            [(0, false), (1, true)]
        };
        for (mode, with_checkpoint) in order {
            let stop = Arc::new(AtomicBool::new(false));
            let done = Arc::new(AtomicU64::new(0));
            let bg = with_checkpoint.then(|| {
                let (ch, stop, n, done, running) = (
                    ch.clone(),
                    stop.clone(),
                    checkpoints.clone(),
                    done.clone(),
                    running.clone(),
                );
                std::thread::spawn(move || {
                    let mut took = Vec::new();
                    let mut next = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(period) = period {
                            std::thread::sleep(next.saturating_duration_since(Instant::now()));
                            next += period;
                        }
                        let t = Instant::now();
                        running.store(true, Ordering::SeqCst);
                        ch.checkpoint().unwrap();
                        running.store(false, Ordering::SeqCst);
                        took.push(t.elapsed().as_secs_f64() * 1e3);
                        n.fetch_add(1, Ordering::Relaxed);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    took
                })
            });
            let mut lat = Vec::with_capacity(count);
            let mut during = Vec::new();
            let more = |lat: &Vec<Duration>| {
                lat.len() < count || (with_checkpoint && done.load(Ordering::Relaxed) < 2)
            };
            while more(&lat) {
                let t = Instant::now();
                let at_start = running.load(Ordering::SeqCst);
                let mut tx = ch.transaction();
                for _ in 0..10 {
                    tx.put(ev.clone()).unwrap();
                }
                tx.commit().unwrap();
                let took = t.elapsed();
                lat.push(took);
                if with_checkpoint && (at_start || running.load(Ordering::SeqCst)) {
                    during.push(took);
                }
            }
            stop.store(true, Ordering::Relaxed);
            if let Some(h) = bg {
                ckpt_ms.extend(h.join().unwrap());
                count = lat.len();
            }
            lat.sort_unstable();
            p99[mode] = percentile(&lat, 0.99);
            all[mode].extend(lat);
            if !during.is_empty() {
                during.sort_unstable();
                p99_during = Some((percentile(&during, 0.99), during.len()));
                overlapped.extend(during);
            }
        }
        let r = p99[1].as_secs_f64() / p99[0].as_secs_f64();
        println!(
            "round {round}: {count} commits per mode; p99 without {:?}, with checkpoints {:?}, ratio {r:.2}",
            p99[0], p99[1]
        );
        ratios.push(r);
        if let Some((d, n)) = p99_during {
            let r = d.as_secs_f64() / p99[0].as_secs_f64();
            println!("round {round}: {n} commits overlapped a checkpoint: p99 {d:?}, ratio {r:.2}");
            overlap_ratios.push(r);
        }
    }
    for (mode, name) in ["no checkpoint", "checkpoints running"].iter().enumerate() {
        let v = &mut all[mode];
        v.sort_unstable();
        println!(
            "{name:>20}: p50 {:?} p99 {:?} p99.9 {:?} max {:?} ({} commits)",
            percentile(v, 0.5),
            percentile(v, 0.99),
            percentile(v, 0.999),
            v[v.len() - 1],
            v.len()
        );
    }
    if !overlapped.is_empty() {
        overlapped.sort_unstable();
        println!(
            "{:>20}: p50 {:?} p99 {:?} p99.9 {:?} max {:?} ({} commits)",
            "overlapping one",
            percentile(&overlapped, 0.5),
            percentile(&overlapped, 0.99),
            percentile(&overlapped, 0.999),
            overlapped[overlapped.len() - 1],
            overlapped.len()
        );
        let (med, min, max) = common::median_min_max(&overlap_ratios);
        println!(
            "p99 ratio (commits overlapping a checkpoint / without), per round: median {med:.2} [{min:.2}-{max:.2}]"
        );
    }
    let (med, min, max) = common::median_min_max(&ratios);
    ckpt_ms.sort_by(f64::total_cmp);
    println!(
        "p99 ratio (with / without), per round: median {med:.2} [{min:.2}-{max:.2}]; {} checkpoints of {queued} queued events, median {:.0} ms",
        checkpoints.load(Ordering::Relaxed),
        ckpt_ms.get(ckpt_ms.len() / 2).copied().unwrap_or(0.0)
    );
    println!("disk regime after: {}", common::disk_regime(dir.path()));
    ch.close().unwrap();
}
