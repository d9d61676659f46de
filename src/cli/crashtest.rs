//! `tidegate crashtest` and its hidden child (see [`crate::crashtest`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::FsyncPolicy;
use crate::at_rest::Compression;
use crate::crashtest::{self, Options, Report};

/// The fsync policy to test.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Fsync {
    /// Every commit is synced before it returns.
    Always,
    /// Commits are synced every 100 ms.
    Interval,
    /// Commits are never synced (only checkpoints sync the log).
    Never,
}

impl From<Fsync> for FsyncPolicy {
    fn from(f: Fsync) -> Self {
        match f {
            Fsync::Always => FsyncPolicy::Always,
            Fsync::Interval => FsyncPolicy::Interval(crashtest::INTERVAL),
            Fsync::Never => FsyncPolicy::Never,
        }
    }
}

/// A compression codec to test.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Compress {
    /// LZ4.
    Lz4,
    /// zstd (needs a build with the `zstd` feature).
    Zstd,
}

impl From<Compress> for Compression {
    fn from(c: Compress) -> Self {
        match c {
            Compress::Lz4 => Compression::Lz4,
            Compress::Zstd => Compression::Zstd,
        }
    }
}

/// Options shared by the parent and the child.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkloadArgs {
    /// Event body size in bytes (at least 8).
    #[arg(long, default_value_t = 512)]
    event_size: usize,
    /// Events per put transaction (at most; each batch is 1..=N) and per take (1..=2N).
    #[arg(long, default_value_t = 10)]
    batch: u64,
    /// Producer threads.
    #[arg(long, default_value_t = 1)]
    producers: u64,
    /// Consumer threads (with more than one, FIFO order is not checked: rollbacks of
    /// concurrent takes reorder the head).
    #[arg(long, default_value_t = 1)]
    consumers: u64,
    /// The channel's fsync policy.
    #[arg(long, value_enum, default_value = "always")]
    fsync: Fsync,
    /// Data directories of the channel.
    #[arg(long, default_value_t = 1, hide = true)]
    data_dirs: u64,
    /// `max_segment_size` of the channel.
    #[arg(long, default_value_t = 1 << 20, hide = true)]
    segment_size: u64,
    /// Mean microseconds between explicit checkpoints in the child (0: none).
    #[arg(long, default_value_t = 20_000, hide = true)]
    checkpoint_every_us: u64,
    /// Encrypt events at rest (AES-256-GCM) with a key file generated in the work directory.
    #[arg(long)]
    encrypt: bool,
    /// Compress events at rest.
    #[arg(long, value_enum)]
    compress: Option<Compress>,
    /// With `--compress`: compress the events of each put transaction together (PutBatch
    /// records, `batch_compression`).
    #[arg(long)]
    batch_compress: bool,
}

impl WorkloadArgs {
    fn options(&self, dir: PathBuf) -> Options {
        let mut o = Options::new(dir);
        o.event_size = self.event_size.max(8);
        o.batch = self.batch.max(1);
        o.producers = self.producers.max(1);
        o.consumers = self.consumers.max(1);
        o.fsync = self.fsync.into();
        o.data_dirs = self.data_dirs.max(1);
        o.segment_size = self.segment_size;
        o.checkpoint_every =
            (self.checkpoint_every_us > 0).then(|| Duration::from_micros(self.checkpoint_every_us));
        o.encrypt = self.encrypt;
        o.compression = self.compress.map_or(Compression::None, Into::into);
        o.batch_compression = self.batch_compress;
        o
    }
}

/// Runs a put/take workload in a child process on a channel under `--dir`, kills it with
/// SIGKILL at random moments, reopens the channel each time and checks the durability
/// contract against what the child acknowledged. Exits 1 on any violation.
#[derive(Debug, clap::Args)]
pub struct CrashtestArgs {
    /// Directory on the storage to test (a `crashtest-SEED` directory is made inside and
    /// removed when the run passes).
    #[arg(long)]
    dir: PathBuf,
    /// Kills to make (default 20, or unlimited with `--duration`).
    #[arg(long)]
    iterations: Option<u64>,
    /// Stop starting kills after this long (e.g. `30s`, `5m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Seed of every random choice (default: from the clock; printed in the report).
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Keep the channels after a passing run.
    #[arg(long)]
    keep: bool,
    #[command(flatten)]
    workload: WorkloadArgs,
}

/// The child process of `crashtest` (hidden).
#[derive(Debug, clap::Args)]
pub struct CrashtestChildArgs {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    start_id: u64,
    #[arg(long)]
    seed: u64,
    #[command(flatten)]
    workload: WorkloadArgs,
}

fn json(r: &Report, o: &Options, seed: u64) -> serde_json::Value {
    serde_json::json!({
        "passed": r.passed(),
        "fsync": crashtest::fsync_name(o.fsync),
        "seed": seed,
        "iterations": r.iterations,
        "acknowledged": r.acknowledged,
        "taken": r.taken,
        "lost": r.lost,
        "duplicates": r.duplicates,
        "recovery_ms_p50": r.recovery_ms_p50,
        "recovery_ms_max": r.recovery_ms_max,
        "violations": r.violations,
        "event_size": o.event_size,
        "batch": o.batch,
        "producers": o.producers,
        "consumers": o.consumers,
        "dir": o.dir,
        "encrypt": o.encrypt,
        "compression": o.compression.name(),
    })
}

/// Runs `tidegate crashtest`.
pub fn run(args: CrashtestArgs) -> ExitCode {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let mut o = args.workload.options(args.dir);
    o.iterations = args.iterations;
    o.duration = args.duration;
    o.seed = seed;
    o.keep = args.keep;
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot find this program to start the child: {e}");
            return ExitCode::from(2);
        }
    };
    let r = match crashtest::run(&o, &exe) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        println!("{}", json(&r, &o, seed));
    } else {
        println!(
            "crashtest on {} (fsync = {}, seed {seed}, {} B events, batches of {}, {} producers, {} consumers, {}compression {})",
            o.dir.display(),
            crashtest::fsync_name(o.fsync),
            o.event_size,
            o.batch,
            o.producers,
            o.consumers,
            if o.encrypt { "encrypted, " } else { "" },
            o.compression.name()
        );
        println!("iterations (SIGKILLs): {}", r.iterations);
        println!(
            "events acknowledged:   {} put, {} taken",
            r.acknowledged, r.taken
        );
        println!("lost:                  {}", r.lost);
        println!(
            "duplicates:            {} (events of a take cut short by the kill, delivered again)",
            r.duplicates
        );
        println!(
            "recovery:              median {:.1} ms, max {:.1} ms",
            r.recovery_ms_p50, r.recovery_ms_max
        );
        for v in &r.violations {
            println!("VIOLATION: {v}");
        }
        if r.passed() {
            println!("passed");
        } else {
            println!("FAILED: the channels are kept in {}", r.work_dir.display());
        }
    }
    if r.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs the hidden `crashtest-child` subcommand.
pub fn run_child(args: CrashtestChildArgs) -> ExitCode {
    let o = args.workload.options(args.dir.clone());
    match crashtest::child_main(&o, &args.dir, args.start_id, args.seed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crashtest child: {e}");
            ExitCode::from(2)
        }
    }
}
