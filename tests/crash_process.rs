//! Real process crashes: a child process (this test binary, re-run with `--ignored --exact
//! child_entry`) drives a file channel with `fsync = always` and reports on stdout what it is
//! about to do and what the channel acknowledged; the parent kills it with SIGKILL at a random
//! moment, reopens the channel and checks that:
//!
//! - every event whose put commit was acknowledged, and that no acknowledged take committed, is
//!   present exactly once;
//! - no event whose take commit was acknowledged is present;
//! - no event appears that was never put, or whose put was rolled back;
//! - the one put and the one take that may have been cut short by the kill are all or nothing;
//! - the queue is in put order (one producer, FIFO, rollbacks return events to the head).
//!
//! Most iterations continue on the previous iteration's directory, so crashes pile up on
//! recovered state (and the parent's reopen-and-close in between); some start afresh.
//! The child also checkpoints from a second thread every few milliseconds, so checkpoints race
//! with commits as the background checkpointer's do. `TIDEGATE_CRASH_ITERATIONS` (default 25),
//! `TIDEGATE_CRASH_SEED` (default: from the clock; printed on failure) and
//! `TIDEGATE_CRASH_CONCURRENT_CHECKPOINTS=0` (no checkpointing thread) tune a run.
//!
//! `kill_9_loses_nothing_acknowledged_encrypted_and_compressed` runs the same loop with
//! encryption and LZ4 compression on (12 iterations unless `TIDEGATE_CRASH_ITERATIONS` says).
//!
//! With a process crash the page cache survives, so this test cannot tell `fsync = always` from
//! `fsync = never`; it checks the commit protocol, replay and the checkpoint/GC interplay under
//! kills at arbitrary instructions, not the durability of syncs.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tidegate::at_rest::{Compression, EncryptionConfig, generate_key_file};
use tidegate::{Event, FileChannel, FileChannelConfig, FsyncPolicy};

const ENV_DIR: &str = "TIDEGATE_CRASH_CHILD_DIR";
const ENV_START_ID: &str = "TIDEGATE_CRASH_CHILD_START_ID";
const ENV_SEED: &str = "TIDEGATE_CRASH_CHILD_SEED";
/// `0` turns off the child's checkpointing thread (the parent passes its own setting on).
const ENV_CONCURRENT_CHECKPOINTS: &str = "TIDEGATE_CRASH_CONCURRENT_CHECKPOINTS";
/// Marks the child's protocol lines among whatever else the test harness prints.
const TAG: &str = "@tidegate-crash@ ";
/// A child that was never killed stops on its own after this long.
const CHILD_TIME_LIMIT: Duration = Duration::from_secs(20);
/// Every this many iterations the parent starts on a fresh directory.
const FRESH_EVERY: usize = 6;

/// `1`: the child and the parent use [`config`] with encryption and compression on.
const ENV_AT_REST: &str = "TIDEGATE_CRASH_CHILD_AT_REST";

fn config(dir: &Path, at_rest: bool) -> FileChannelConfig {
    let cfg = FileChannelConfig::new(dir.join("ckpt"), vec![dir.join("data1"), dir.join("data2")])
        .max_segment_size(16 << 10)
        .max_event_size(1024)
        .minimum_required_space(1 << 20)
        .fsync(FsyncPolicy::Always)
        .capacity(10_000_000)
        // The parent reads the whole queue in one transaction.
        .transaction_capacity(10_000_000);
    if !at_rest {
        return cfg;
    }
    cfg.compression(Compression::Lz4)
        .compression_threshold(32)
        .encryption(EncryptionConfig::new(1).key(1, key_file(dir)))
}

/// The key of an encrypted run (created by the parent before the first child starts).
fn key_file(dir: &Path) -> PathBuf {
    dir.join("k1.key")
}

fn body(id: u64) -> Vec<u8> {
    let mut b = format!("{id:012}").into_bytes();
    b.extend((0..id % 97).map(|k| b'a' + ((id + k) % 26) as u8));
    b
}

/// The id of an event, checking that its body is intact.
fn id_of(e: &Event) -> u64 {
    let id: u64 = std::str::from_utf8(&e.body()[..12.min(e.body().len())])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("event body does not start with an id: {:?}", e.body()));
    assert_eq!(
        e.body(),
        body(id).as_slice(),
        "body of event {id} is damaged"
    );
    id
}

/// xorshift64: enough randomness for delays and choices, no extra crate.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------------------------
// The child.

fn emit(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{TAG}{line}").expect("write to the parent");
    out.flush().expect("flush to the parent");
}

fn join_ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
}

/// The child's workload; runs only when the parent asks (it is `#[ignore]`d otherwise, and does
/// nothing without its environment).
///
/// Protocol lines (each written and flushed before the next step):
/// `O n` opened with n events; `B a b` about to put ids a..=b; `P a b` that put committed;
/// `X a b` that put rolled back; `t ids` about to commit a take of ids; `T ids` it committed.
#[test]
#[ignore = "the child process of kill_9_loses_nothing_acknowledged"]
fn child_entry() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let mut next_id = env_u64(ENV_START_ID).expect("start id");
    let mut rng = Rng::new(env_u64(ENV_SEED).expect("seed"));
    let started = Instant::now();

    let at_rest = env_u64(ENV_AT_REST) == Some(1);
    let ch = FileChannel::open(config(Path::new(&dir), at_rest)).expect("child: open");
    emit(format_args!("O {}", ch.stats().size));
    if env_u64(ENV_CONCURRENT_CHECKPOINTS) != Some(0) {
        // Checkpoints from another thread race with commits, as the background checkpointer's
        // do (its interval cannot go below 1 s, too slow for this test).
        let ch = ch.clone();
        let mut rng = Rng::new(rng.next());
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_micros(rng.below(5000)));
                if let Err(e) = ch.checkpoint() {
                    eprintln!("child: checkpoint failed: {e}");
                    std::process::abort();
                }
            }
        });
    }
    let mut last_taken: Option<u64> = None;
    while started.elapsed() < CHILD_TIME_LIMIT {
        let n = 1 + rng.below(20);
        let (first, last) = (next_id, next_id + n - 1);
        next_id += n;
        emit(format_args!("B {first} {last}"));
        let mut tx = ch.transaction();
        for id in first..=last {
            tx.put(Event::new(body(id))).expect("child: put");
        }
        if rng.below(8) == 0 {
            tx.rollback().expect("child: rollback of puts");
            emit(format_args!("X {first} {last}"));
        } else {
            tx.commit().expect("child: commit of puts");
            emit(format_args!("P {first} {last}"));
        }

        if rng.below(2) == 0 || ch.stats().size > 1000 {
            let max = if ch.stats().size > 1000 { 200 } else { 10 };
            let mut tx = ch.transaction();
            let events = tx
                .take_batch(1 + rng.below(max) as usize, Duration::ZERO)
                .expect("child: take");
            let ids: Vec<u64> = events.iter().map(id_of).collect();
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "child: a take returned ids out of order: {ids:?}"
            );
            if let (Some(first), Some(prev)) = (ids.first(), last_taken) {
                assert!(
                    *first > prev,
                    "child: took {first} after a committed take of {prev}"
                );
            }
            match rng.below(4) {
                0 | 1 if !ids.is_empty() => {
                    emit(format_args!("t {}", join_ids(&ids)));
                    tx.commit().expect("child: commit of takes");
                    emit(format_args!("T {}", join_ids(&ids)));
                    last_taken = ids.last().copied();
                }
                2 => tx.rollback().expect("child: rollback of takes"),
                _ => drop(tx),
            }
        }
        if rng.below(16) == 0 {
            ch.checkpoint().expect("child: checkpoint");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The parent.

/// What the child said before it died.
#[derive(Debug, Default, Clone)]
struct ChildLog {
    /// Events in the channel when the child opened it (`O`), if it got that far.
    opened_with: Option<u64>,
    /// Put batches begun (`B`), acknowledged (`P`), rolled back (`X`).
    begun: Vec<(u64, u64)>,
    put: Vec<(u64, u64)>,
    rolled_back: Vec<(u64, u64)>,
    /// Take commits begun (`t`) and acknowledged (`T`).
    take_begun: Vec<Vec<u64>>,
    taken: Vec<Vec<u64>>,
}

impl ChildLog {
    fn parse(lines: &[String]) -> Result<ChildLog, String> {
        let mut log = ChildLog::default();
        for line in lines {
            let Some(at) = line.find(TAG) else { continue };
            let mut words = line[at + TAG.len()..].split_whitespace();
            let kind = words.next().unwrap_or("");
            let nums: Vec<u64> = words
                .map(|w| w.parse().map_err(|_| format!("bad line {line:?}")))
                .collect::<Result<_, _>>()?;
            let range = || match nums[..] {
                [a, b] if a <= b => Ok((a, b)),
                _ => Err(format!("bad range in {line:?}")),
            };
            match kind {
                "O" if nums.len() == 1 => log.opened_with = Some(nums[0]),
                "B" => log.begun.push(range()?),
                "P" => log.put.push(range()?),
                "X" => log.rolled_back.push(range()?),
                "t" => log.take_begun.push(nums),
                "T" => log.taken.push(nums),
                _ => return Err(format!("unknown line {line:?}")),
            }
        }
        Ok(log)
    }

    fn max_id(&self) -> Option<u64> {
        self.begun.iter().map(|r| r.1).max()
    }
}

/// Checks the queue found after a crash against what was there before the child ran (`prior`,
/// the queue the previous check accepted) and what the child said (`log`).
fn check(prior: &[u64], log: &ChildLog, queue: &[u64]) -> Result<(), String> {
    // The protocol itself: every acknowledgement was announced, and at most the last
    // announcement is unanswered.
    let finished_puts: Vec<(u64, u64)> = {
        let mut v = log.put.clone();
        v.extend(&log.rolled_back);
        v.sort_unstable();
        v
    };
    let mut begun = log.begun.clone();
    begun.sort_unstable();
    let pending_put: Vec<u64> = match begun.len().checked_sub(finished_puts.len()) {
        Some(0) if begun == finished_puts => Vec::new(),
        Some(1) if begun[..begun.len() - 1] == finished_puts[..] => {
            let (a, b) = begun[begun.len() - 1];
            (a..=b).collect()
        }
        _ => {
            return Err(format!(
                "put lines do not match: B {begun:?}, P/X {finished_puts:?}"
            ));
        }
    };
    let pending_take: Vec<u64> = match log.take_begun.len().checked_sub(log.taken.len()) {
        Some(0) if log.take_begun == log.taken => Vec::new(),
        Some(1) if log.take_begun[..log.taken.len()] == log.taken[..] => {
            log.take_begun[log.taken.len()].clone()
        }
        _ => {
            return Err(format!(
                "take lines do not match: t {:?}, T {:?}",
                log.take_begun, log.taken
            ));
        }
    };
    if let Some(n) = log.opened_with
        && n != prior.len() as u64
    {
        return Err(format!(
            "the child opened the channel with {n} events; {} were expected",
            prior.len()
        ));
    }

    let taken: HashSet<u64> = log.taken.iter().flatten().copied().collect();
    let rolled_back: HashSet<u64> = log.rolled_back.iter().flat_map(|&(a, b)| a..=b).collect();
    let maybe: HashSet<u64> = pending_put.iter().chain(&pending_take).copied().collect();
    let must: Vec<u64> = prior
        .iter()
        .copied()
        .chain(log.put.iter().flat_map(|&(a, b)| a..=b))
        .filter(|id| !taken.contains(id) && !maybe.contains(id))
        .collect();
    let must_set: HashSet<u64> = must.iter().copied().collect();

    if let Some(w) = queue.windows(2).find(|w| w[0] >= w[1]) {
        return Err(format!(
            "the queue is out of put order or has a duplicate: {} then {}",
            w[0], w[1]
        ));
    }
    let present: HashSet<u64> = queue.iter().copied().collect();
    for id in queue {
        if must_set.contains(id) || maybe.contains(id) {
            continue;
        }
        let why = if taken.contains(id) {
            "its take commit was acknowledged"
        } else if rolled_back.contains(id) {
            "its put was rolled back"
        } else {
            "it was never put"
        };
        return Err(format!("event {id} is in the queue, but {why}"));
    }
    let lost: Vec<u64> = must
        .iter()
        .copied()
        .filter(|id| !present.contains(id))
        .collect();
    if !lost.is_empty() {
        return Err(format!(
            "{} acknowledged events are missing, first {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        ));
    }
    for (what, ids) in [("put", &pending_put), ("take", &pending_take)] {
        let n = ids.iter().filter(|id| present.contains(id)).count();
        if n != 0 && n != ids.len() {
            return Err(format!(
                "the interrupted {what} of {ids:?} is half applied: {n} of {} events present",
                ids.len()
            ));
        }
    }
    Ok(())
}

/// Kills the child if the parent panics before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read_lines(r: impl Read + Send + 'static) -> JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut lines = Vec::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                // A line cut short by the kill was never a complete announcement: drop it.
                Ok(_) if buf.ends_with(b"\n") => {
                    lines.push(String::from_utf8_lossy(&buf).trim_end().to_owned());
                }
                _ => return lines,
            }
        }
    })
}

/// Runs the child on `dir` and kills it after `delay`. Returns its protocol lines and its
/// stderr.
fn run_child(
    dir: &Path,
    at_rest: bool,
    start_id: u64,
    seed: u64,
    delay: Duration,
) -> (Vec<String>, String) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = KillOnDrop(
        Command::new(exe)
            .args([
                "--exact",
                "child_entry",
                "--nocapture",
                "--ignored",
                "--test-threads=1",
            ])
            .env(ENV_DIR, dir)
            .env(ENV_START_ID, start_id.to_string())
            .env(ENV_SEED, seed.to_string())
            .env(ENV_AT_REST, u8::from(at_rest).to_string())
            .env(
                ENV_CONCURRENT_CHECKPOINTS,
                env_u64(ENV_CONCURRENT_CHECKPOINTS).unwrap_or(1).to_string(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the child"),
    );
    let out = read_lines(child.0.stdout.take().expect("child stdout"));
    let err = read_lines(child.0.stderr.take().expect("child stderr"));
    std::thread::sleep(delay);
    child.0.kill().expect("kill the child");
    let status = child.0.wait().expect("wait for the child");
    let lines = out.join().expect("stdout reader");
    let stderr = err.join().expect("stderr reader").join("\n");
    assert_eq!(
        status.signal(),
        Some(9),
        "the child must die by SIGKILL, not {status}: it failed or finished early.\nstderr:\n{stderr}"
    );
    (lines, stderr)
}

/// Opens the channel, reads its whole queue (taking everything, then rolling back), closes it.
fn read_queue(dir: &Path, at_rest: bool) -> Vec<u64> {
    let ch = FileChannel::open(config(dir, at_rest)).expect("parent: reopen after the crash");
    let size = ch.stats().size;
    assert_eq!(ch.recovery_report().events_restored, size);
    let mut tx = ch.transaction();
    let events = tx
        .take_batch(usize::MAX, Duration::ZERO)
        .expect("parent: take");
    assert_eq!(
        events.len() as u64,
        size,
        "stats().size disagrees with the queue"
    );
    let ids: Vec<u64> = events.iter().map(id_of).collect();
    tx.rollback().expect("parent: rollback");
    assert_eq!(ch.stats().size, size, "a rollback must return every event");
    ch.close().expect("parent: close");
    ids
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    kill_loop(
        false,
        env_u64("TIDEGATE_CRASH_ITERATIONS").unwrap_or(25) as usize,
    );
}

/// The same with encryption and LZ4 compression on (fewer iterations by default).
#[test]
fn kill_9_loses_nothing_acknowledged_encrypted_and_compressed() {
    kill_loop(
        true,
        env_u64("TIDEGATE_CRASH_ITERATIONS").unwrap_or(12) as usize,
    );
}

fn kill_loop(at_rest: bool, iterations: usize) {
    let seed = env_u64("TIDEGATE_CRASH_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let mut rng = Rng::new(seed);
    let root = tempfile::tempdir().expect("tempdir");
    let mut run = 0;
    let mut prior: Vec<u64> = Vec::new();
    let mut next_id = 1;
    let mut accumulated = 0;
    for i in 0..iterations {
        if i > 0 && i % FRESH_EVERY == 0 {
            run += 1;
            prior.clear();
        } else if !prior.is_empty() {
            accumulated += 1;
        }
        let dir = root.path().join(format!("run-{run}"));
        // Mostly mid-workload; sometimes while the child starts up and replays.
        let delay = Duration::from_millis(if rng.below(5) == 0 {
            rng.below(20)
        } else {
            20 + rng.below(280)
        });
        let child_seed = rng.next();
        if at_rest && !key_file(&dir).exists() {
            std::fs::create_dir_all(&dir).expect("run directory");
            generate_key_file(&key_file(&dir)).expect("key file");
        }
        let (lines, stderr) = run_child(&dir, at_rest, next_id, child_seed, delay);
        let log = ChildLog::parse(&lines).unwrap_or_else(|e| panic!("{e}"));
        let queue = read_queue(&dir, at_rest);
        if let Err(e) = check(&prior, &log, &queue) {
            panic!(
                "iteration {i} (TIDEGATE_CRASH_SEED={seed}, child seed {child_seed}, killed after \
                 {delay:?}): {e}\nchild stderr:\n{stderr}\nlast child lines:\n{}",
                lines[lines.len().saturating_sub(5)..].join("\n")
            );
        }
        next_id = next_id.max(log.max_id().map_or(0, |m| m + 1));
        prior = queue;
    }
    assert!(
        iterations < 2 * FRESH_EVERY || accumulated > 0,
        "no iteration ran on top of recovered events (seed {seed})"
    );
}

// ---------------------------------------------------------------------------------------------
// The checker must be able to fail.

fn log_of(lines: &[&str]) -> ChildLog {
    let lines: Vec<String> = lines.iter().map(|l| format!("{TAG}{l}")).collect();
    ChildLog::parse(&lines).expect("parse")
}

#[test]
fn the_checker_accepts_what_the_protocol_allows() {
    let log = log_of(&["O 2", "B 10 12", "P 10 12", "t 1 2", "T 1 2", "B 13 14"]);
    check(&[1, 2], &log, &[10, 11, 12]).expect("interrupted put absent");
    check(&[1, 2], &log, &[10, 11, 12, 13, 14]).expect("interrupted put present");
    let log = log_of(&["B 10 12", "P 10 12", "t 1 2 10"]);
    check(&[1, 2], &log, &[11, 12]).expect("interrupted take applied");
    check(&[1, 2], &log, &[1, 2, 10, 11, 12]).expect("interrupted take lost");
}

#[test]
fn the_checker_rejects_every_violation() {
    let log = log_of(&[
        "O 2", "B 10 12", "P 10 12", "B 13 14", "X 13 14", "t 1", "T 1", "B 15 16",
    ]);
    let ok = [2, 10, 11, 12];
    check(&[1, 2], &log, &ok).expect("valid");
    let bad: [(&[u64], &str); 8] = [
        (&[2, 10, 12], "missing"),
        (&[10, 11, 12], "missing"),
        (&[1, 2, 10, 11, 12], "take commit was acknowledged"),
        (&[2, 10, 11, 12, 13], "rolled back"),
        (&[2, 10, 11, 12, 99], "never put"),
        (&[2, 11, 10, 12], "out of put order"),
        (&[2, 10, 10, 11, 12], "duplicate"),
        (&[2, 10, 11, 12, 15], "half applied"),
    ];
    for (queue, why) in bad {
        let err = check(&[1, 2], &log, queue).expect_err(why);
        assert!(
            err.contains(why),
            "{queue:?}: expected {why:?}, got {err:?}"
        );
    }
    let err = check(&[1, 2, 3], &log, &[2, 3, 10, 11, 12]).expect_err("wrong count at open");
    assert!(err.contains("opened the channel with 2"), "{err}");
    let log = log_of(&["B 1 2", "B 3 4", "P 3 4"]);
    assert!(
        check(&[], &log, &[3, 4]).is_err(),
        "two unanswered put lines"
    );
    let log = log_of(&["B 1 2", "P 1 2", "t 1", "t 2"]);
    assert!(
        check(&[], &log, &[1, 2]).is_err(),
        "two unanswered take lines"
    );
    let log = log_of(&["B 1 3", "P 1 3", "t 1 2"]);
    let err = check(&[], &log, &[2, 3]).expect_err("half-applied take");
    assert!(err.contains("half applied"), "{err}");
}
