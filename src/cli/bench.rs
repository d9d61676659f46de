//! `tidegate bench`: benchmark a storage backend through a real channel, against the raw disk,
//! in the same run (the measuring is in [`crate::bench`]; this file is the command line).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::FsyncPolicy;
use crate::at_rest::Compression;
use crate::bench::plan::parse_duration;
use crate::bench::report::rate;
use crate::bench::{Amount, BenchOptions, ChannelKind, Plan, Progress, chart};

/// Which channel to benchmark.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ChannelArg {
    /// The durable file channel.
    File,
    /// The in-memory channel (no durability, no baseline).
    Memory,
}

/// An fsync policy on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FsyncArg {
    /// Every commit is durable when it returns.
    Always,
    /// A background sync every `--fsync-interval`.
    Interval,
    /// Never sync on commit.
    Never,
}

/// Benchmark a storage backend: a put/take workload through a real channel on each directory,
/// interleaved round by round with a raw write + fdatasync baseline of the same bytes on the
/// same directory. Compare the ratio, not absolute rates from different runs.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A directory to benchmark (a disk, a file system, tmpfs); repeat for several. The run
    /// works in a subdirectory of each and removes it afterwards.
    #[arg(long = "dir")]
    pub dirs: Vec<PathBuf>,
    /// The channel: `file` (durable) or `memory` (no durability, no baseline).
    #[arg(long, value_enum, default_value = "file")]
    pub channel: ChannelArg,
    /// Event body sizes in bytes, comma-separated to sweep.
    #[arg(long, value_delimiter = ',', default_value = "512")]
    pub event_size: Vec<usize>,
    /// Events per transaction, comma-separated to sweep.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    pub batch: Vec<usize>,
    /// Producer threads, comma-separated to sweep.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub producers: Vec<usize>,
    /// Consumer threads.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Fsync policies, comma-separated to sweep.
    #[arg(long, value_delimiter = ',', value_enum, default_value = "always")]
    pub fsync: Vec<FsyncArg>,
    /// The interval of `--fsync interval`.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub fsync_interval: Duration,
    /// Time per phase (put, take, end to end), e.g. `10s`. The default when neither this nor
    /// `--events` is given.
    #[arg(long, value_parser = parse_duration, conflicts_with = "events")]
    pub duration: Option<Duration>,
    /// Events per phase instead of a duration.
    #[arg(long)]
    pub events: Option<u64>,
    /// Data directories the channel spreads its log over inside each `--dir`.
    #[arg(long, default_value_t = 1)]
    pub data_dirs_per_dir: usize,
    /// Recorded rounds per configuration (after an unrecorded warm-up).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// The channel's segment size in bytes.
    #[arg(long, default_value_t = crate::config::DEFAULT_MAX_SEGMENT_SIZE)]
    pub segment_size: u64,
    /// Skip the unrecorded warm-up round.
    #[arg(long)]
    pub no_warm_up: bool,
    /// Encrypt the log (AES-256-GCM with a random key generated in the work directory).
    #[arg(long)]
    pub encrypt: bool,
    /// Payload compression (`none`, `lz4`, `zstd`), comma-separated to sweep. The benchmark's
    /// bodies are a repeating byte pattern, so they compress far better than real data.
    #[arg(long, value_delimiter = ',', value_parser = parse_compression, default_value = "none")]
    pub compress: Vec<Compression>,
    /// Write the results as JSON (field names in docs/benchmarks.md).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the results as a Markdown table.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Write a chart of throughput and ratio per configuration as SVG.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

impl BenchArgs {
    fn options(&self) -> BenchOptions {
        BenchOptions {
            dirs: self.dirs.clone(),
            channel: match self.channel {
                ChannelArg::File => ChannelKind::File,
                ChannelArg::Memory => ChannelKind::Memory,
            },
            event_sizes: self.event_size.clone(),
            batches: self.batch.clone(),
            producers: self.producers.clone(),
            consumers: self.consumers,
            fsync: self
                .fsync
                .iter()
                .map(|f| match f {
                    FsyncArg::Always => FsyncPolicy::Always,
                    FsyncArg::Interval => FsyncPolicy::Interval(self.fsync_interval),
                    FsyncArg::Never => FsyncPolicy::Never,
                })
                .collect(),
            amount: match (self.events, self.duration) {
                (Some(n), _) => Amount::Events(n),
                (None, Some(d)) => Amount::Duration(d),
                (None, None) => Amount::Duration(Duration::from_secs(10)),
            },
            data_dirs_per_dir: self.data_dirs_per_dir,
            rounds: self.rounds,
            segment_size: self.segment_size,
            warm_up: !self.no_warm_up,
            encrypt: self.encrypt,
            compression: self.compress.clone(),
        }
    }
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    Compression::from_name(s).ok_or_else(|| format!("{s:?}: use none, lz4 or zstd"))
}

/// Checks that each output file's directory exists, before the run.
fn check_output(flag: &str, path: Option<&Path>) -> Result<(), String> {
    let Some(p) = path else { return Ok(()) };
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if parent.is_dir() {
        Ok(())
    } else {
        Err(format!(
            "{flag} {}: directory {} does not exist",
            p.display(),
            parent.display()
        ))
    }
}

fn write_output(path: &Path, what: &str, text: &str) -> Result<(), String> {
    std::fs::write(path, text)
        .map_err(|e| format!("writing the {what} to {}: {e}", path.display()))?;
    eprintln!("wrote the {what} to {}", path.display());
    Ok(())
}

/// Runs `tidegate bench`.
pub fn run(args: BenchArgs) -> ExitCode {
    let checks = [
        check_output("--json", args.json.as_deref()),
        check_output("--markdown", args.markdown.as_deref()),
        check_output("--svg", args.svg.as_deref()),
    ];
    if let Some(Err(e)) = checks.into_iter().find(Result::is_err) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let plan = match Plan::new(args.options()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        if let Err(e) = ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed)) {
            tracing::warn!(error = %e, "no Ctrl-C handler: an interrupted run leaves its files");
        }
    }
    let total_rounds = plan.configurations().len() * plan.options().rounds;
    let bar = if std::io::stderr().is_terminal() {
        let bar =
            ProgressBar::with_draw_target(Some(total_rounds as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} rounds, {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let rounds = plan.options().rounds;
    let report = plan.run(&stop, &mut |p| match p {
        Progress::ConfigStarted {
            index,
            total,
            config,
        } => {
            let w = &config.workload;
            bar.set_message(format!(
                "configuration {}/{total}: {} B x{} {}p {}",
                index + 1,
                w.event_size,
                w.batch,
                w.producers,
                crate::bench::workload::fsync_name(w.fsync)
            ));
        }
        Progress::RoundDone { round, result, .. } => {
            bar.inc(1);
            if let Some(r) = result.ratio() {
                bar.set_message(format!(
                    "round {}/{rounds}: put {} ev/s, ratio {r:.2}",
                    round + 1,
                    rate(result.put.events_per_sec())
                ));
            }
        }
        Progress::Regime { when, line } => {
            bar.suspend(|| eprintln!("disk regime {when}: {line}"));
        }
    });
    bar.finish_and_clear();
    if report.interrupted {
        eprintln!(
            "interrupted: reporting the {} rounds done so far; the benchmark's files are removed",
            report.rounds_done()
        );
    }
    print!("{}", report.table());
    let mut failed = report.has_errors();
    let outputs = [
        (&args.json, "JSON"),
        (&args.markdown, "Markdown"),
        (&args.svg, "SVG chart"),
    ];
    for (path, what) in outputs {
        let Some(path) = path else { continue };
        let text = match what {
            "JSON" => Ok(report.to_json()),
            "Markdown" => Ok(report.markdown()),
            _ => chart::svg(&report),
        };
        if let Err(e) = text.and_then(|t| write_output(path, what, &t)) {
            eprintln!("error: {e}");
            failed = true;
        }
    }
    if report.interrupted {
        ExitCode::from(130)
    } else if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
