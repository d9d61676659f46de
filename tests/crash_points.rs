//! Crash at every sync point.
//!
//! A deterministic single-producer, single-consumer workload (put transactions of 1–5 events,
//! take transactions that commit or roll back, checkpoints, some of them while a put or take
//! transaction is open, and a final close) runs on a [`MemFs`]. A first run counts its syncs
//! (N). Then, for every crash point k in 0..=N (all of them when N is small, else the first 50,
//! the last 50 and an even sample in between), the workload runs again on a fresh `MemFs` whose
//! syncs after the k-th fail, which freezes the durable image at sync k; the workload stops at
//! its first error. Five crash images are taken: [`MemFs::crash`] with each kind of torn tail
//! (none, 512-byte and 4 KiB cuts, garbage), and one where unsynced directory operations reached
//! the disk as well ([`MemFs::crash_keeping_dir_ops`]). Each is opened in strict mode and must
//! hold exactly what the contract (DESIGN.md §1) allows:
//!
//! - every put whose commit returned `Ok`, unless a take of it committed (G1);
//! - nothing that was never put or whose put did not commit (G2), except that the put whose
//!   commit failed (the workload's last operation) may have reached the log: then all of its
//!   events appear, or none;
//! - a take whose commit was not acknowledged leaves its events queued (G3), except that the
//!   failed take commit may have reached the log (all of its events gone, or none);
//! - events in put-commit order, each once (G4);
//! - no event whose take commit was acknowledged (G5), and no checkpoint fallback (a durable
//!   checkpoint never names bytes that are not durable);
//! - recovery uses a checkpoint at least as new as the last one whose call returned `Ok`.
//!
//! The recovered channel is then closed without taking anything and crashed again: the second
//! recovery must see the same events (recovery's own repairs are durable).

mod common;

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Rng, varied_event, varied_id};
use tidegate::io::{Cut, MemFs, TornTail};
use tidegate::{FileChannel, FileChannelConfig, RecoveryMode, RecoveryReport};

#[derive(Clone, Copy, Debug)]
struct Setup {
    name: &'static str,
    data_dirs: usize,
    seed: u64,
    steps: usize,
    /// Check only images in which unsynced writes survived out of order
    /// ([`TornTail::Sectors`]), recovered in skip mode (strict mode refuses them, DESIGN.md
    /// §7.3).
    reordered: bool,
}

fn config(fs: &MemFs, setup: Setup) -> FileChannelConfig {
    let dirs: Vec<PathBuf> = (0..setup.data_dirs)
        .map(|i| PathBuf::from(format!("/tg/data{i}")))
        .collect();
    FileChannelConfig::new("/tg/ckpt", dirs)
        .file_system(Arc::new(fs.clone()))
        .minimum_required_space(1 << 20)
        .max_segment_size(8192)
        .max_event_size(1024)
        .checkpoint_interval(Duration::from_secs(3600))
        .keep_alive(Duration::from_millis(10))
        .recovery_mode(if setup.reordered {
            RecoveryMode::Skip
        } else {
            RecoveryMode::Strict
        })
}

/// What the channel acknowledged during one run, and what it may or may not have kept.
#[derive(Debug, Default)]
struct Model {
    /// Ids of put transactions whose commit returned Ok, in commit order.
    acked_puts: Vec<u64>,
    /// The put transaction whose commit returned an error (the run's last operation).
    uncertain_put: Vec<u64>,
    /// Ids whose take commit returned Ok.
    acked_takes: HashSet<u64>,
    /// The take transaction whose commit returned an error.
    uncertain_take: Vec<u64>,
    /// Every id ever handed to `put` (for messages).
    attempted: u64,
    /// How the run ended.
    stopped: Option<String>,
    /// Operations that returned Ok.
    ops_ok: u64,
    /// Checkpoints that returned Ok (close's included). A fresh channel numbers its
    /// checkpoints from 1 and the background checkpointer never runs in this test, so the k-th
    /// has generation k.
    checkpoints: u64,
}

/// Runs the workload until it finishes or an operation fails. Returns the channel (if it opened)
/// so the caller can take the crash image before closing it.
fn run(fs: &MemFs, setup: Setup) -> (Model, Option<FileChannel>) {
    let mut m = Model::default();
    let ch = match FileChannel::open(config(fs, setup)) {
        Ok(ch) => ch,
        Err(e) => {
            m.stopped = Some(format!("open: {e}"));
            return (m, None);
        }
    };
    let mut rng = Rng(setup.seed);
    let mut next_id = 0u64;
    if let Err(e) = steps(&ch, setup, &mut rng, &mut next_id, &mut m) {
        m.stopped = Some(e);
        return (m, Some(ch));
    }
    match ch.close() {
        Ok(()) => {
            // close writes a checkpoint
            m.ops_ok += 1;
            m.checkpoints += 1;
        }
        Err(e) => m.stopped = Some(format!("close: {e}")),
    }
    (m, Some(ch))
}

fn steps(
    ch: &FileChannel,
    setup: Setup,
    rng: &mut Rng,
    next_id: &mut u64,
    m: &mut Model,
) -> Result<(), String> {
    for step in 0..setup.steps {
        let what = rng.below(100);
        if what < 48 {
            // A put transaction; sometimes large (spills), sometimes rolled back or dropped,
            // sometimes open across a checkpoint.
            let n = 1 + rng.below(5);
            let ids: Vec<u64> = (0..n).map(|i| *next_id + i).collect();
            *next_id += n;
            m.attempted = *next_id;
            let mut tx = ch.transaction();
            for &id in &ids {
                tx.put(varied_event(id))
                    .map_err(|e| format!("step {step}: put {id}: {}", e.error))?;
            }
            if rng.chance(8) {
                ch.checkpoint()
                    .map_err(|e| format!("step {step}: checkpoint during put: {e}"))?;
                m.ops_ok += 1;
                m.checkpoints += 1;
            }
            match rng.below(10) {
                0 => tx
                    .rollback()
                    .map_err(|e| format!("step {step}: put rollback: {e}"))?,
                1 => drop(tx),
                _ => {
                    if let Err(e) = tx.commit() {
                        m.uncertain_put = ids;
                        return Err(format!("step {step}: put commit: {e}"));
                    }
                    m.acked_puts.extend(&ids);
                }
            }
        } else if what < 92 {
            // A take transaction of 1-4 events: commit, roll back or drop; sometimes open
            // across a checkpoint.
            let max = 1 + rng.below(4) as usize;
            let mut tx = ch.transaction();
            let taken: Vec<u64> = tx
                .take_batch(max, Duration::ZERO)
                .map_err(|e| format!("step {step}: take: {e}"))?
                .iter()
                .map(varied_id)
                .collect();
            if rng.chance(10) {
                ch.checkpoint()
                    .map_err(|e| format!("step {step}: checkpoint during take: {e}"))?;
                m.ops_ok += 1;
                m.checkpoints += 1;
            }
            match rng.below(8) {
                0 => tx
                    .rollback()
                    .map_err(|e| format!("step {step}: take rollback: {e}"))?,
                1 => drop(tx),
                _ => {
                    if let Err(e) = tx.commit() {
                        m.uncertain_take = taken;
                        return Err(format!("step {step}: take commit: {e}"));
                    }
                    m.acked_takes.extend(&taken);
                }
            }
        } else {
            ch.checkpoint()
                .map_err(|e| format!("step {step}: checkpoint: {e}"))?;
            m.checkpoints += 1;
        }
        m.ops_ok += 1;
    }
    Ok(())
}

/// Opens the image, returns the queued ids in order without consuming them, and closes.
/// Also returns what recovery reported.
fn recover(img: &MemFs, setup: Setup, what: &str) -> Result<(Vec<u64>, RecoveryReport), String> {
    let ch = FileChannel::open(config(img, setup))
        .map_err(|e| format!("{what}: open of the crash image failed: {e}"))?;
    let report = ch.recovery_report().clone();
    if !setup.reordered
        && (!report.checkpoint_fallbacks.is_empty()
            || report.corrupt_records_skipped != 0
            || report.corrupt_segments_skipped != 0)
    {
        return Err(format!(
            "{what}: recovery had to fall back or skip damage: {report:?}"
        ));
    }
    let mut ids = Vec::new();
    let mut tx = ch.transaction();
    loop {
        let got = tx
            .take_batch(1000, Duration::ZERO)
            .map_err(|e| format!("{what}: take after recovery: {e}"))?;
        if got.is_empty() {
            break;
        }
        ids.extend(got.iter().map(varied_id));
    }
    tx.rollback()
        .map_err(|e| format!("{what}: rollback after recovery: {e}"))?;
    ch.close()
        .map_err(|e| format!("{what}: close after recovery: {e}"))?;
    Ok((ids, report))
}

/// Checks the recovered queue against the model; returns every violation found.
fn check(m: &Model, got: &[u64]) -> Vec<String> {
    let mut bad = Vec::new();
    let mut seen = HashSet::new();
    let dups: Vec<u64> = got.iter().copied().filter(|id| !seen.insert(*id)).collect();
    if !dups.is_empty() {
        bad.push(format!("duplicated: {dups:?}"));
    }
    if let Some(w) = got.windows(2).find(|w| w[0] >= w[1]) {
        bad.push(format!("out of put-commit order: {} before {}", w[0], w[1]));
    }
    let got_set: BTreeSet<u64> = got.iter().copied().collect();
    let uncertain_take: HashSet<u64> = m.uncertain_take.iter().copied().collect();
    let lost: Vec<u64> = m
        .acked_puts
        .iter()
        .copied()
        .filter(|id| {
            !m.acked_takes.contains(id) && !uncertain_take.contains(id) && !got_set.contains(id)
        })
        .collect();
    if !lost.is_empty() {
        bad.push(format!("acknowledged puts lost (G1): {lost:?}"));
    }
    let allowed: HashSet<u64> = m
        .acked_puts
        .iter()
        .chain(&m.uncertain_put)
        .copied()
        .collect();
    let phantom: Vec<u64> = got
        .iter()
        .copied()
        .filter(|id| !allowed.contains(id))
        .collect();
    if !phantom.is_empty() {
        bad.push(format!(
            "events never committed (G2): {phantom:?} (ids < {} were put)",
            m.attempted
        ));
    }
    let resurrected: Vec<u64> = got
        .iter()
        .copied()
        .filter(|id| m.acked_takes.contains(id))
        .collect();
    if !resurrected.is_empty() {
        bad.push(format!(
            "events whose take commit was acknowledged (G5): {resurrected:?}"
        ));
    }
    let present = m
        .uncertain_put
        .iter()
        .filter(|id| got_set.contains(id))
        .count();
    if present != 0 && present != m.uncertain_put.len() {
        bad.push(format!(
            "failed put commit {:?} half applied",
            m.uncertain_put
        ));
    }
    let still: Vec<u64> = m
        .uncertain_take
        .iter()
        .copied()
        .filter(|id| m.acked_puts.contains(id))
        .collect();
    let present = still.iter().filter(|id| got_set.contains(id)).count();
    if present != 0 && present != still.len() {
        bad.push(format!("failed take commit {still:?} half applied"));
    }
    bad
}

/// The crash images checked at crash point `k`: one of each kind, seeded by `k`.
fn tails_for(k: u64) -> [TornTail; 4] {
    let seed = k.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED;
    [
        TornTail::None,
        TornTail::Page4096(Cut::Random(seed)),
        TornTail::Garbage(seed),
        TornTail::Sector512(Cut::Random(seed)),
    ]
}

/// The crash points to check: all of 0..=n when there are few, else the first 50, the last 50
/// and `budget - 100` evenly spread in between.
fn crash_points(n: u64, budget: u64) -> Vec<u64> {
    if n < budget {
        return (0..=n).collect();
    }
    let mut ks: BTreeSet<u64> = (0..50).chain(n - 49..=n).collect();
    let middle = budget - 100;
    for i in 0..middle {
        ks.insert(50 + i * (n - 99) / middle);
    }
    ks.into_iter().collect()
}

fn crash_at_every_sync_point(setup: Setup) {
    let started = Instant::now();
    let counting = MemFs::new();
    let (model, ch) = run(&counting, setup);
    assert!(
        model.stopped.is_none(),
        "{}: the fault-free run failed: {:?}",
        setup.name,
        model.stopped
    );
    drop(ch);
    let n = counting.syncs();
    // The fault-free run must itself recover to exactly the acknowledged state.
    let (got, report) = recover(&counting.crash(TornTail::None), setup, "fault-free run")
        .unwrap_or_else(|e| panic!("{}: {e}", setup.name));
    assert_eq!(
        report.checkpoint_generation,
        Some(model.checkpoints),
        "{}: the last checkpoint is not the one recovery used",
        setup.name
    );
    let bad = check(&model, &got);
    assert!(bad.is_empty(), "{}: fault-free run: {bad:?}", setup.name);
    assert!(
        model.acked_puts.len() > 100 && !model.acked_takes.is_empty(),
        "{}: the workload does too little: {model:?}",
        setup.name
    );

    let points = crash_points(n, 600);
    let mut failures = Vec::new();
    let mut stats = Stats::default();
    for &k in &points {
        let fs = MemFs::new();
        fs.crash_after_syncs(Some(k));
        let (m, ch) = run(&fs, setup);
        // The images are taken before anything else happens: closing the failed channel may
        // still write (never durably: every later sync fails).
        let mut images: Vec<(String, MemFs)> = Vec::new();
        if setup.reordered {
            let t = TornTail::Sectors(k ^ 0xABCD);
            images.push((format!("{t:?}"), fs.crash(t)));
        } else {
            images.extend(
                tails_for(k)
                    .into_iter()
                    .map(|t| (format!("{t:?}"), fs.crash(t))),
            );
        }
        // And one where directory operations nobody synced reached the disk anyway: all of
        // them, or the oldest few.
        let pending = fs.unsynced_dir_ops();
        let keep = if k % 2 == 0 {
            pending
        } else {
            (k as usize * 7) % (pending + 1)
        };
        if !setup.reordered {
            let t = TornTail::Page4096(Cut::Random(!k));
            stats.dir_ops_kept += keep as u64;
            images.push((
                format!("{t:?} + the first {keep} of {pending} unsynced directory operations"),
                fs.crash_keeping_dir_ops(t, keep),
            ));
        }
        match ch {
            Some(ch) => {
                let _ = ch.close();
            }
            None => stats.stopped_in_open += 1,
        }
        if m.stopped.is_none() {
            // Only syncs whose failure the channel tolerates (pruning, collection) came after
            // sync k: the run completed.
            stats.completed += 1;
        }
        for (tail, img) in images {
            stats.images += 1;
            let ctx = format!(
                "{}: crash after sync {k} of {n}, {tail}, run stopped at {:?} after {} ok ops",
                setup.name, m.stopped, m.ops_ok
            );
            let (got, full_replay, skipped_damage) = match recover(&img, setup, "first recovery") {
                Ok((got, report)) => {
                    stats.torn_tails += report.torn_tails;
                    let generation = report.checkpoint_generation.unwrap_or(0);
                    if generation < m.checkpoints && !setup.reordered {
                        failures.push(format!(
                            "{ctx}: checkpoint {} returned Ok but recovery used generation {generation}",
                            m.checkpoints
                        ));
                    }
                    let skipped =
                        report.corrupt_records_skipped + report.corrupt_segments_skipped > 0;
                    if skipped
                        && report
                            .checkpoint_fallbacks
                            .iter()
                            .any(|f| f.contains("before the checkpoint's replay start"))
                    {
                        failures.push(format!(
                            "{ctx}: a good checkpoint was rejected because damage was skipped: {:?}",
                            report.checkpoint_fallbacks
                        ));
                    }
                    (got, report.full_replay, skipped)
                }
                Err(e) => {
                    failures.push(format!("{ctx}: {e}"));
                    continue;
                }
            };
            let mut bad = check(&m, &got);
            if setup.reordered && full_replay {
                // A fallback full replay caused by damage may redeliver committed takes (G5).
                bad.retain(|b| !b.contains("(G5)"));
            }
            if setup.reordered && skipped_damage {
                // Skip mode keeps every undamaged record: of a transaction whose commit never
                // returned and some of whose records were lost, the surviving part is kept.
                bad.retain(|b| !b.contains("half applied"));
            }
            if !bad.is_empty() {
                failures.push(format!("{ctx}: {}", bad.join("; ")));
                continue;
            }
            if m.uncertain_put.first().is_some_and(|id| got.contains(id)) {
                stats.failed_puts_kept += 1;
            }
            if m.uncertain_take.iter().any(|id| got.contains(id)) {
                stats.failed_takes_undone += 1;
            }
            // Recovery's own repairs (zeroed tails, the checkpoint at close) must be durable:
            // crash the recovered image again and expect the same queue.
            match recover(&img.crash(TornTail::None), setup, "second recovery") {
                Ok((again, _)) if again == got => {}
                Ok((again, _)) => failures.push(format!(
                    "{ctx}: a second recovery differs: first {got:?}, then {again:?}"
                )),
                Err(e) => failures.push(format!("{ctx}: {e}")),
            }
        }
    }
    eprintln!(
        "{}: N = {n} syncs; {} crash points, {} images checked; {stats:?}; full run: {} acked puts, {} acked takes; {:.1} s",
        setup.name,
        points.len(),
        stats.images,
        model.acked_puts.len(),
        model.acked_takes.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} crash images violated the contract:\n{}",
        failures.len(),
        stats.images,
        failures
            .iter()
            .take(20)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// What the crash points exercised (printed, for judging coverage).
#[derive(Debug, Default)]
struct Stats {
    images: u64,
    stopped_in_open: u64,
    completed: u64,
    /// Unsynced directory operations kept in the images that keep them.
    dir_ops_kept: u64,
    /// Torn tails recovery repaired, over all first recoveries.
    torn_tails: u64,
    /// Images in which the put whose commit failed had reached the log.
    failed_puts_kept: u64,
    /// Images in which the take whose commit failed had not reached the log.
    failed_takes_undone: u64,
}

#[test]
fn crash_at_every_sync_point_one_data_dir() {
    crash_at_every_sync_point(Setup {
        name: "one data dir",
        data_dirs: 1,
        seed: 0x7469_6465,
        steps: 400,
        reordered: false,
    });
}

#[test]
fn crash_at_every_sync_point_two_data_dirs() {
    crash_at_every_sync_point(Setup {
        name: "two data dirs",
        data_dirs: 2,
        seed: 0x6761_7465,
        steps: 400,
        reordered: false,
    });
}

/// Unsynced writes that reach the disk out of order (a later sector kept, an earlier one lost),
/// recovered in skip mode (strict mode refuses such images: DESIGN.md §7.3). Skip mode keeps the
/// surviving records of a transaction that lost some, and must not reject good checkpoints
/// because of it (it did, before the fix in `try_checkpoint`).
#[test]
fn crash_at_every_sync_point_reordered_writes_skip_mode() {
    crash_at_every_sync_point(Setup {
        name: "reordered writes, skip mode",
        data_dirs: 1,
        seed: 0x7469_6465,
        steps: 400,
        reordered: true,
    });
}

#[test]
fn the_crash_points_sample_keeps_both_ends() {
    assert_eq!(crash_points(10, 400), (0..=10).collect::<Vec<_>>());
    let ks = crash_points(1000, 400);
    assert!(ks.len() <= 400 && ks.len() > 300);
    assert!((0..50).all(|k| ks.contains(&k)));
    assert!((951..=1000).all(|k| ks.contains(&k)));
}
