//! `tidegate crashtest`: kill a real process that is writing a channel, at random moments, on
//! the user's own disk, and check the durability contract after each kill.
//!
//! [`run`] (the parent) starts the same binary as a child (`tidegate crashtest-child ...`, a
//! hidden subcommand that calls [`child_main`]), which runs a put/take workload on a channel in
//! a directory under `--dir` and prints a protocol line before and after every commit (see
//! `check`). After a random delay the parent SIGKILLs it, reopens the channel (timing the
//! recovery), reads the whole queue and checks it against what the child acknowledged:
//! every acknowledged put present (unless its take was acknowledged), nothing never committed,
//! nothing taken for good come back, an interrupted commit all or nothing, no event twice, and
//! FIFO per producer when there is one consumer. Most iterations continue on the recovered
//! channel, so crashes pile up; every sixth starts on a fresh one.
//!
//! A SIGKILL loses the process, not the page cache: it tests the commit protocol, replay,
//! checkpoints and garbage collection under kills at arbitrary instructions, on the user's file
//! system, whatever the fsync policy. It cannot show what a power cut takes (the test suite's
//! `MemFs` crash images do that); docs/crash-testing.md says what each policy can lose then.
//!
//! With [`Options::encrypt`] and [`Options::compression`] the channel stores its events
//! encrypted and compressed (the run generates the key file, [`key_file`]); the contract and the
//! checks are the same, and every event read back is decrypted and compared with what was put.

mod check;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::at_rest::{Compression, EncryptionConfig, generate_key_file};
use crate::{Event, FileChannel, FileChannelConfig, FsyncPolicy};

/// Every this many iterations the parent starts on a fresh channel.
const FRESH_EVERY: u64 = 6;
/// A child that was never killed stops on its own after this long.
const CHILD_TIME_LIMIT: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the channels go (a `crashtest-{seed}` directory is made inside).
    pub dir: PathBuf,
    /// Stop after this many kills (`None`: only `duration` limits the run).
    pub iterations: Option<u64>,
    /// Stop starting new iterations after this long.
    pub duration: Option<Duration>,
    /// Event body size in bytes (at least 8: the id).
    pub event_size: usize,
    /// Events per put transaction and most per take.
    pub batch: u64,
    /// Producer threads in the child.
    pub producers: u64,
    /// Consumer threads in the child.
    pub consumers: u64,
    /// The channel's fsync policy.
    pub fsync: FsyncPolicy,
    /// Seed of every random choice (delays, batch sizes, rollbacks).
    pub seed: u64,
    /// Data directories of the channel.
    pub data_dirs: u64,
    /// `max_segment_size` of the channel: small segments roll and get collected often.
    pub segment_size: u64,
    /// Mean pause between explicit checkpoints in the child (`None`: only the background
    /// checkpointer, every 30 s).
    pub checkpoint_every: Option<Duration>,
    /// Longest delay before a kill.
    pub max_kill_delay: Duration,
    /// Keep the channels when the run passes (they are always kept on a violation).
    pub keep: bool,
    /// Encrypt events at rest, with a key file the run generates ([`key_file`]).
    pub encrypt: bool,
    /// Compress events at rest (above the default threshold).
    pub compression: Compression,
    /// With `compression`: compress each put transaction's events together (PutBatch records).
    pub batch_compression: bool,
}

impl Options {
    /// Defaults for `dir`: 20 iterations, 512-byte events, batches of 10, one producer and one
    /// consumer, `fsync = always`, one data directory, 1 MiB segments, a checkpoint every 20 ms
    /// on average, kills within 300 ms.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Options {
            dir: dir.into(),
            iterations: None,
            duration: None,
            event_size: 512,
            batch: 10,
            producers: 1,
            consumers: 1,
            fsync: FsyncPolicy::Always,
            seed: 1,
            data_dirs: 1,
            segment_size: 1 << 20,
            checkpoint_every: Some(Duration::from_millis(20)),
            max_kill_delay: Duration::from_millis(300),
            keep: false,
            encrypt: false,
            compression: Compression::None,
            batch_compression: false,
        }
    }

    /// The arguments of the hidden `crashtest-child` subcommand for one child.
    pub fn child_args(&self, run_dir: &Path, start_id: u64, seed: u64) -> Vec<String> {
        let mut args = vec![
            "crashtest-child".to_owned(),
            "--dir".to_owned(),
            run_dir.display().to_string(),
            "--start-id".to_owned(),
            start_id.to_string(),
            "--seed".to_owned(),
            seed.to_string(),
            "--event-size".to_owned(),
            self.event_size.to_string(),
            "--batch".to_owned(),
            self.batch.to_string(),
            "--producers".to_owned(),
            self.producers.to_string(),
            "--consumers".to_owned(),
            self.consumers.to_string(),
            "--fsync".to_owned(),
            fsync_name(self.fsync).to_owned(),
            "--data-dirs".to_owned(),
            self.data_dirs.to_string(),
            "--segment-size".to_owned(),
            self.segment_size.to_string(),
            "--checkpoint-every-us".to_owned(),
            self.checkpoint_every
                .map_or(0, |d| d.as_micros() as u64)
                .to_string(),
        ];
        if self.encrypt {
            args.push("--encrypt".to_owned());
        }
        if self.compression != Compression::None {
            args.push("--compress".to_owned());
            args.push(self.compression.name().to_owned());
        }
        if self.batch_compression {
            args.push("--batch-compress".to_owned());
        }
        args
    }
}

/// `always`, `interval` or `never`.
pub fn fsync_name(p: FsyncPolicy) -> &'static str {
    match p {
        FsyncPolicy::Always => "always",
        FsyncPolicy::Interval(_) => "interval",
        _ => "never",
    }
}

/// `--fsync interval` syncs this often.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// The key file of a run with `encrypt`: `crashtest.key` in the run's work directory (the
/// parent of every `run_dir`), generated by [`run`] before the first child starts.
pub fn key_file(run_dir: &Path) -> PathBuf {
    run_dir.parent().unwrap_or(run_dir).join("crashtest.key")
}

/// The channel configuration parent and child use for `run_dir`.
pub fn config(o: &Options, run_dir: &Path) -> FileChannelConfig {
    let data: Vec<PathBuf> = (0..o.data_dirs.max(1))
        .map(|i| run_dir.join(format!("data-{i}")))
        .collect();
    let mut cfg = FileChannelConfig::new(run_dir.join("checkpoint"), data)
        .max_segment_size(o.segment_size)
        .max_event_size((o.event_size as u64 + 64).min(o.segment_size / 2))
        .minimum_required_space(1 << 20)
        .fsync(o.fsync)
        .capacity(100_000_000)
        .transaction_capacity(100_000_000)
        .compression(o.compression)
        .batch_compression(o.batch_compression);
    if o.encrypt {
        cfg = cfg.encryption(EncryptionConfig::new(1).key(1, key_file(run_dir)));
    }
    cfg
}

/// The body of event `id`: the id, then a pattern derived from it, `size` bytes in all.
fn body(id: u64, size: usize) -> Vec<u8> {
    let mut b = id.to_le_bytes().to_vec();
    b.extend((0..size.saturating_sub(8)).map(|k| (id as usize).wrapping_add(k) as u8 | 1));
    b
}

/// The id of an event, or why its body is not what was put.
fn id_of(e: &Event, size: usize) -> Result<u64, String> {
    let id = e
        .body()
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| format!("an event body of {} bytes has no id", e.body().len()))?;
    if e.body() != body(id, size) {
        return Err(format!("the body of event {id} is damaged"));
    }
    Ok(id)
}

/// xorshift64: enough randomness for delays and choices.
#[derive(Debug, Clone)]
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
        self.next() % n.max(1)
    }
}

fn emit(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    // The parent reads every line; if it is gone, so is the point of going on.
    if writeln!(out, "{}{line}", check::TAG)
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(3);
    }
}

fn join_ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
}

/// The child: runs the workload on `run_dir` until it is killed (or a minute passes). Ids
/// start at `start_id` (rounded up to a multiple of the producer count); producer `p` puts the
/// ids equal to `p` modulo the producer count. Returns an error message on any failure.
pub fn child_main(o: &Options, run_dir: &Path, start_id: u64, seed: u64) -> Result<(), String> {
    let producers = o.producers.max(1);
    let base = start_id.div_ceil(producers) * producers;
    let ch = FileChannel::open(config(o, run_dir)).map_err(|e| format!("open: {e}"))?;
    emit(format_args!("O {}", ch.stats().size));
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut threads: Vec<JoinHandle<Result<(), String>>> = Vec::new();
    if let Some(every) = o.checkpoint_every {
        let ch = ch.clone();
        let mut rng = Rng::new(rng.next());
        let mean = every.as_micros() as u64;
        threads.push(std::thread::spawn(move || {
            while started.elapsed() < CHILD_TIME_LIMIT {
                std::thread::sleep(Duration::from_micros(rng.below(2 * mean + 1)));
                ch.checkpoint().map_err(|e| format!("checkpoint: {e}"))?;
            }
            Ok(())
        }));
    }
    for p in 0..producers {
        let ch = ch.clone();
        let mut rng = Rng::new(rng.next());
        let (batch, size) = (o.batch.max(1), o.event_size);
        threads.push(std::thread::spawn(move || {
            let mut next = base + p;
            while started.elapsed() < CHILD_TIME_LIMIT {
                let n = 1 + rng.below(batch);
                let (first, last) = (next, next + (n - 1) * producers);
                next = last + producers;
                emit(format_args!("B {p} {first} {last}"));
                let mut tx = ch.transaction();
                for id in (first..=last).step_by(producers as usize) {
                    tx.put(Event::new(body(id, size)))
                        .map_err(|e| format!("put: {}", e.error))?;
                }
                if rng.below(8) == 0 {
                    tx.rollback().map_err(|e| format!("rollback: {e}"))?;
                    emit(format_args!("X {p} {first} {last}"));
                } else {
                    tx.commit().map_err(|e| format!("commit of puts: {e}"))?;
                    emit(format_args!("P {p} {first} {last}"));
                }
            }
            Ok(())
        }));
    }
    for c in 0..o.consumers.max(1) {
        let ch = ch.clone();
        let mut rng = Rng::new(rng.next());
        let (batch, size) = (o.batch.max(1), o.event_size);
        threads.push(std::thread::spawn(move || {
            while started.elapsed() < CHILD_TIME_LIMIT {
                let mut tx = ch.transaction();
                let want = 1 + rng.below(2 * batch) as usize;
                let events = tx
                    .take_batch(want, Duration::from_millis(50))
                    .map_err(|e| format!("take: {e}"))?;
                let ids = events
                    .iter()
                    .map(|e| id_of(e, size))
                    .collect::<Result<Vec<u64>, String>>()?;
                match rng.below(8) {
                    0 => tx
                        .rollback()
                        .map_err(|e| format!("rollback of takes: {e}"))?,
                    1 => drop(tx),
                    _ if ids.is_empty() => tx.commit().map_err(|e| format!("commit: {e}"))?,
                    _ => {
                        emit(format_args!("t {c} {}", join_ids(&ids)));
                        tx.commit().map_err(|e| format!("commit of takes: {e}"))?;
                        emit(format_args!("T {c} {}", join_ids(&ids)));
                    }
                }
            }
            Ok(())
        }));
    }
    for t in threads {
        t.join()
            .map_err(|_| "a worker thread panicked".to_owned())??;
    }
    Ok(())
}

/// What a run found.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Report {
    /// Kills (each followed by a recovery and a check).
    pub iterations: u64,
    /// Events whose put commit was acknowledged.
    pub acknowledged: u64,
    /// Events whose take commit was acknowledged.
    pub taken: u64,
    /// Acknowledged events missing after a recovery.
    pub lost: u64,
    /// Events of a take cut short by the kill that were delivered again (allowed).
    pub duplicates: u64,
    /// Median recovery (open) time after a kill, in milliseconds.
    pub recovery_ms_p50: f64,
    /// Longest recovery time, in milliseconds.
    pub recovery_ms_max: f64,
    /// Every violation of the contract, with its iteration.
    pub violations: Vec<String>,
    /// Where the channels are (kept after a violation or with `keep`).
    pub work_dir: PathBuf,
}

impl Report {
    /// True when the contract held: no violation, and nothing lost under `fsync = always`.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Kills the child if the parent stops early.
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

/// Opens the channel, times it, reads the whole queue (taking everything, then rolling back),
/// and closes it.
fn read_queue(o: &Options, run_dir: &Path) -> Result<(Vec<u64>, Duration), String> {
    // The killed child is reaped, so its lock is gone; but a thread of this process that forks
    // at this moment (another crash test running beside this one, in the test harness) holds a
    // copy of every descriptor, the lock's included, until its child calls exec. So a lock
    // conflict is retried for a while before it counts.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (ch, took) = loop {
        let started = Instant::now();
        match FileChannel::open(config(o, run_dir)) {
            Ok(ch) => break (ch, started.elapsed()),
            Err(crate::Error::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("reopen: {e}")),
        }
    };
    let mut tx = ch.transaction();
    let events = tx
        .take_batch(usize::MAX, Duration::ZERO)
        .map_err(|e| format!("take: {e}"))?;
    let ids = events
        .iter()
        .map(|e| id_of(e, o.event_size))
        .collect::<Result<Vec<_>, _>>()?;
    tx.rollback().map_err(|e| format!("rollback: {e}"))?;
    ch.close().map_err(|e| format!("close: {e}"))?;
    Ok((ids, took))
}

/// Runs the crash test, starting children as `exe` with [`Options::child_args`]. Fails only
/// when the test cannot run (a directory cannot be made, a child cannot be started or dies on
/// its own); contract violations are in the report.
pub fn run(o: &Options, exe: &Path) -> Result<Report, String> {
    if !o.compression.is_available() {
        return Err(format!(
            "compression {} is not in this build (build with the `{0}` feature)",
            o.compression.name()
        ));
    }
    std::fs::create_dir_all(&o.dir).map_err(|e| format!("creating {}: {e}", o.dir.display()))?;
    // A fresh directory: never continue on a channel an earlier run left behind.
    let mut work = o.dir.join(format!("crashtest-{}", o.seed));
    let mut n = 1;
    while let Err(e) = std::fs::create_dir(&work) {
        if e.kind() != std::io::ErrorKind::AlreadyExists || n > 1000 {
            return Err(format!("creating {}: {e}", work.display()));
        }
        n += 1;
        work = o.dir.join(format!("crashtest-{}-{n}", o.seed));
    }
    if o.encrypt {
        let key = key_file(&work.join("run-0"));
        generate_key_file(&key).map_err(|e| format!("creating {}: {e}", key.display()))?;
    }
    let iterations = match (o.iterations, o.duration) {
        (Some(n), _) => n,
        (None, Some(_)) => u64::MAX,
        (None, None) => 20,
    };
    let started = Instant::now();
    let mut rng = Rng::new(o.seed);
    let mut report = Report {
        work_dir: work.clone(),
        ..Report::default()
    };
    let mut recoveries: Vec<f64> = Vec::new();
    let (mut run_no, mut prior, mut next_id) = (0u64, Vec::<u64>::new(), 1u64);
    let producers = o.producers.max(1);
    let fifo = o.consumers.max(1) == 1;
    for i in 0..iterations {
        if o.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if i > 0 && i % FRESH_EVERY == 0 {
            run_no += 1;
            prior.clear();
        }
        let run_dir = work.join(format!("run-{run_no}"));
        // Mostly mid-workload; sometimes while the child starts up and replays.
        let max = o.max_kill_delay.as_millis().max(21) as u64;
        let delay = Duration::from_millis(if rng.below(5) == 0 {
            rng.below(20)
        } else {
            20 + rng.below(max - 20)
        });
        let child_seed = rng.next();
        let mut child = KillOnDrop(
            Command::new(exe)
                .args(o.child_args(&run_dir, next_id, child_seed))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("starting {}: {e}", exe.display()))?,
        );
        let out = read_lines(child.0.stdout.take().ok_or("no child stdout")?);
        let err = read_lines(child.0.stderr.take().ok_or("no child stderr")?);
        std::thread::sleep(delay);
        let _ = child.0.kill();
        let status = child
            .0
            .wait()
            .map_err(|e| format!("waiting for the child: {e}"))?;
        let lines = out.join().map_err(|_| "stdout reader panicked")?;
        let stderr = err.join().map_err(|_| "stderr reader panicked")?.join("\n");
        if status.signal() != Some(9) {
            return Err(format!(
                "iteration {i}: the child must die by SIGKILL, not {status}: it failed or \
                 finished early. Its stderr:\n{stderr}"
            ));
        }
        let log = check::ChildLog::parse(&lines)?;
        // Replay's log lines would drown the report; what it found is checked here.
        let (queue, took) =
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
                read_queue(o, &run_dir)
            })
            .map_err(|e| format!("iteration {i}: {e}"))?;
        recoveries.push(took.as_secs_f64() * 1e3);
        let outcome = check::check(&prior, &log, &queue, producers, fifo);
        report.iterations += 1;
        report.acknowledged += log.acknowledged(producers);
        report.taken += log
            .taken
            .values()
            .flatten()
            .map(|v| v.len() as u64)
            .sum::<u64>();
        report.lost += outcome.lost;
        report.duplicates += outcome.redelivered;
        for v in outcome.violations {
            report.violations.push(format!(
                "iteration {i} (child seed {child_seed}, killed after {delay:?}, {}): {v}",
                run_dir.display()
            ));
        }
        next_id = next_id.max(log.max_id().map_or(0, |m| m + 1));
        prior = queue;
    }
    recoveries.sort_by(f64::total_cmp);
    report.recovery_ms_p50 = recoveries.get(recoveries.len() / 2).copied().unwrap_or(0.0);
    report.recovery_ms_max = recoveries.last().copied().unwrap_or(0.0);
    if report.passed() && !o.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(report)
}
