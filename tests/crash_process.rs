//! Real process crashes: `tidegate::crashtest` (the code behind `tidegate crashtest`) starts
//! the real `tidegate` binary as a child that puts, takes, rolls back and checkpoints (from a
//! second thread every few milliseconds, so checkpoints race with commits) on a channel with two
//! data directories and 16 KiB segments, printing each acknowledgement after `commit()`
//! returns; it SIGKILLs the child at a random moment, reopens the channel and checks the
//! contract against the acknowledgements (see `src/crashtest/check.rs`, whose unit tests show
//! the checker rejecting every violation). Most iterations continue on the previous one's
//! channel, so crashes pile up on recovered state.
//!
//! `TIDEGATE_CRASH_ITERATIONS` (default 25), `TIDEGATE_CRASH_SEED` (default: from the clock;
//! printed on failure) and `TIDEGATE_CRASH_CONCURRENT_CHECKPOINTS=0` (no checkpointing thread)
//! tune a run.
//!
//! With a process crash the page cache survives, so this test cannot tell `fsync = always` from
//! `fsync = never`; it checks the commit protocol, replay and the checkpoint/GC interplay under
//! kills at arbitrary instructions, not the durability of syncs.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tidegate::crashtest::{self, Options};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    let iterations = env_u64("TIDEGATE_CRASH_ITERATIONS").unwrap_or(25);
    let seed = env_u64("TIDEGATE_CRASH_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let root = tempfile::tempdir().expect("tempdir");
    let mut o = Options::new(root.path());
    o.iterations = Some(iterations);
    o.seed = seed;
    o.event_size = 100;
    o.batch = 20;
    o.data_dirs = 2;
    o.segment_size = 16 << 10;
    o.checkpoint_every = (env_u64("TIDEGATE_CRASH_CONCURRENT_CHECKPOINTS") != Some(0))
        .then(|| Duration::from_micros(2500));
    let r = crashtest::run(&o, Path::new(env!("CARGO_BIN_EXE_tidegate")))
        .unwrap_or_else(|e| panic!("TIDEGATE_CRASH_SEED={seed}: {e}"));
    assert!(
        r.passed(),
        "TIDEGATE_CRASH_SEED={seed}: {} violations:\n{}",
        r.violations.len(),
        r.violations.join("\n")
    );
    assert_eq!(r.iterations, iterations);
    assert_eq!(r.lost, 0);
    assert!(r.acknowledged > 0 && r.taken > 0, "{r:?}");
}
