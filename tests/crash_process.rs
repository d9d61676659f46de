//! Real process crashes: `tidegate::crashtest` (the code behind `tidegate crashtest`) starts
//! the real `tidegate` binary as a child that puts, takes, rolls back and checkpoints (from a
//! second thread every few milliseconds, so checkpoints race with commits) on a channel with two
//! data directories and 16 KiB segments, printing each acknowledgement after `commit()`
//! returns; it SIGKILLs the child at a random moment, reopens the channel and checks the
//! contract against the acknowledgements (see `src/crashtest/check.rs`, whose unit tests show
//! the checker rejecting every violation). Most iterations continue on the previous one's
//! channel, so crashes pile up on recovered state.
//!
//! `kill_9_loses_nothing_acknowledged_encrypted_and_compressed` runs the same loop with
//! encryption (a key file the run generates) and LZ4 compression on, then checks with the offline
//! tools and the key that the last channel's events really are encrypted and compressed, and
//! that every encrypted record authenticates.
//!
//! `TIDEGATE_CRASH_ITERATIONS` (default 25; 8 for the encrypted variant), `TIDEGATE_CRASH_SEED`
//! (default: from the clock; printed on failure) and `TIDEGATE_CRASH_CONCURRENT_CHECKPOINTS=0`
//! (no checkpointing thread) tune a run.
//!
//! With a process crash the page cache survives, so this test cannot tell `fsync = always` from
//! `fsync = never`; it checks the commit protocol, replay and the checkpoint/GC interplay under
//! kills at arbitrary instructions, not the durability of syncs.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tidegate::at_rest::Compression;
use tidegate::crashtest::{self, Options};
use tidegate::offline::{self, ChannelDirs};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn options(root: &Path, iterations: u64) -> (Options, u64) {
    let seed = env_u64("TIDEGATE_CRASH_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let mut o = Options::new(root);
    o.iterations = Some(env_u64("TIDEGATE_CRASH_ITERATIONS").unwrap_or(iterations));
    o.seed = seed;
    o.event_size = 100;
    o.batch = 20;
    o.data_dirs = 2;
    o.segment_size = 16 << 10;
    o.checkpoint_every = (env_u64("TIDEGATE_CRASH_CONCURRENT_CHECKPOINTS") != Some(0))
        .then(|| Duration::from_micros(2500));
    (o, seed)
}

/// Runs the loop and asserts that it passed.
fn kill_loop(o: &Options, seed: u64) -> crashtest::Report {
    let r = crashtest::run(o, Path::new(env!("CARGO_BIN_EXE_tidegate")))
        .unwrap_or_else(|e| panic!("TIDEGATE_CRASH_SEED={seed}: {e}"));
    assert!(
        r.passed(),
        "TIDEGATE_CRASH_SEED={seed}: {} violations:\n{}",
        r.violations.len(),
        r.violations.join("\n")
    );
    assert_eq!(Some(r.iterations), o.iterations);
    assert_eq!(r.lost, 0);
    assert!(r.acknowledged > 0 && r.taken > 0, "{r:?}");
    r
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    let root = tempfile::tempdir().expect("tempdir");
    let (o, seed) = options(root.path(), 25);
    kill_loop(&o, seed);
}

#[test]
fn kill_9_loses_nothing_acknowledged_with_batch_compression_and_encryption() {
    let root = tempfile::tempdir().expect("tempdir");
    let (mut o, seed) = options(root.path(), 8);
    o.event_size = 200; // log-line sized: compressed in batches, not one by one
    o.encrypt = true;
    o.compression = Compression::Lz4;
    o.batch_compression = true;
    o.keep = true;
    let r = kill_loop(&o, seed);

    // The last channel, as the offline tools see it with the run's key: every record
    // authenticates, and the events on disk are in encrypted PutBatch records.
    let mut runs: Vec<_> = std::fs::read_dir(&r.work_dir)
        .expect("work dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    runs.sort();
    let last = runs.last().expect("a run directory");
    let dirs = ChannelDirs::of(&crashtest::config(&o, last));
    let v = offline::verify(&dirs).unwrap_or_else(|e| panic!("TIDEGATE_CRASH_SEED={seed}: {e}"));
    assert!(!v.is_damaged(), "TIDEGATE_CRASH_SEED={seed}: {v:?}");
    assert!(v.tags_checked && v.encrypted_records > 0, "{v:?}");
    let mut batches = 0u64;
    offline::inspect::dump(&dirs, &mut |d| {
        if d.kind == "put_batch" {
            batches += 1;
            assert!(
                d.detail.contains("compressed") && d.detail.contains("encrypted"),
                "{d:?}"
            );
        }
    })
    .expect("dump");
    assert!(
        batches > 0,
        "TIDEGATE_CRASH_SEED={seed}: no PutBatch record"
    );
}

#[test]
fn kill_9_loses_nothing_acknowledged_encrypted_and_compressed() {
    let root = tempfile::tempdir().expect("tempdir");
    let (mut o, seed) = options(root.path(), 8);
    o.event_size = 512; // above the compression threshold (256 B), and its pattern compresses
    o.encrypt = true;
    o.compression = Compression::Lz4;
    o.keep = true;
    let r = kill_loop(&o, seed);

    // Every run's channel, as the offline tools see it with the run's key: every record
    // authenticates. The newest run whose log still holds records (a run killed early, on a
    // loaded machine, may hold none) shows the events on disk encrypted and compressed.
    let mut runs: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(&r.work_dir)
        .expect("work dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .filter_map(|p| {
            let n = p
                .file_name()?
                .to_str()?
                .strip_prefix("run-")?
                .parse()
                .ok()?;
            Some((n, p))
        })
        .collect();
    runs.sort();
    assert!(!runs.is_empty(), "no run directory");
    let mut found = None;
    for (_, run) in runs.iter().rev() {
        let dirs = ChannelDirs::of(&crashtest::config(&o, run));
        let v =
            offline::verify(&dirs).unwrap_or_else(|e| panic!("TIDEGATE_CRASH_SEED={seed}: {e}"));
        assert!(!v.is_damaged(), "TIDEGATE_CRASH_SEED={seed}: {v:?}");
        if found.is_none() && v.encrypted_records > 0 {
            found = Some((dirs, v));
        }
    }
    let (dirs, v) = found
        .unwrap_or_else(|| panic!("TIDEGATE_CRASH_SEED={seed}: no run wrote an encrypted record"));
    assert!(v.tags_checked, "{v:?}");
    let (mut puts, mut compressed) = (0u64, 0u64);
    offline::inspect::dump(&dirs, &mut |d| {
        if d.kind == "put" {
            puts += 1;
            compressed += u64::from(d.detail.contains("compressed"));
        }
    })
    .expect("dump");
    assert!(
        compressed > 0 && v.encrypted_records == puts,
        "{compressed} compressed and {} encrypted of {puts} puts",
        v.encrypted_records
    );
}
