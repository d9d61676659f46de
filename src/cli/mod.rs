//! The `tidegate` command line (feature `cli`). The binary in `src/bin/tidegate.rs` only calls
//! [`main`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::{Event, FileChannel, FileChannelConfig, FsyncPolicy, RecoveryMode};

pub mod bench;

/// tidegate: a durable event channel (a write-ahead log with checkpoints).
#[derive(Debug, Parser)]
#[command(name = "tidegate", version, about)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `tidegate=debug`.
    #[arg(long, global = true, default_value = "info", env = "TIDEGATE_LOG")]
    pub log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a producer and a consumer through a file channel on an embedded default
    /// configuration, then reopens it to show replay. A first look at tidegate.
    Demo {
        /// Where the channel keeps its files.
        #[arg(long, default_value = "tidegate-demo")]
        dir: PathBuf,
        /// Events to send.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Events per put transaction.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Body size in bytes.
        #[arg(long, default_value_t = 512)]
        event_size: usize,
    },
    /// Opens a channel (replaying it), prints what replay found and the channel's state, and
    /// closes it again. Refuses to run while another process has the channel open.
    Inspect {
        #[command(flatten)]
        channel: ChannelArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks a storage backend through a real channel, against the raw disk in the same run.
    Bench(Box<bench::BenchArgs>),
}

/// How offline commands name a channel (Flume's tool takes `-l dataDirs`).
#[derive(Debug, clap::Args)]
struct ChannelArgs {
    /// The checkpoint directory.
    #[arg(long)]
    checkpoint_dir: PathBuf,
    /// The data directories, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    data_dirs: Vec<PathBuf>,
    /// Open even if records are damaged (skip them).
    #[arg(long)]
    skip_corrupt: bool,
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Demo {
            dir,
            events,
            batch,
            event_size,
        } => demo(dir, events, batch, event_size),
        Command::Inspect { channel, json } => inspect(channel, json),
        Command::Bench(args) => return bench::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo_config(dir: &std::path::Path) -> FileChannelConfig {
    FileChannelConfig::new(dir.join("checkpoint"), vec![dir.join("data")])
        .minimum_required_space(64 << 20)
        .max_segment_size(32 << 20)
        .max_event_size(1 << 20)
        .fsync(FsyncPolicy::Always)
}

fn demo(dir: PathBuf, events: u64, batch: usize, event_size: usize) -> crate::Result<()> {
    let batch = batch.max(1);
    println!(
        "channel in {} (fsync = always: every commit is durable when it returns)",
        dir.display()
    );
    let ch = FileChannel::open(demo_config(&dir))?;
    let r = ch.recovery_report();
    if r.events_restored > 0 {
        println!(
            "replay restored {} events left by an earlier run",
            r.events_restored
        );
    }
    let started = Instant::now();
    let producer = {
        let ch = ch.clone();
        std::thread::spawn(move || -> crate::Result<()> {
            let body = vec![b'x'; event_size];
            let mut sent = 0;
            while sent < events {
                let mut tx = ch.transaction();
                let n = (events - sent).min(batch as u64);
                for i in 0..n {
                    tx.put(Event::new(body.clone()).with_header("seq", (sent + i).to_string()))?;
                }
                tx.commit()?;
                sent += n;
            }
            Ok(())
        })
    };
    let mut received = 0u64;
    let mut idle_since = Instant::now();
    while received < events {
        let mut tx = ch.transaction();
        let got = tx.take_batch(batch, Duration::from_millis(100))?;
        tx.commit()?;
        if got.is_empty() {
            if producer.is_finished() && idle_since.elapsed() > Duration::from_secs(1) {
                break;
            }
        } else {
            idle_since = Instant::now();
        }
        received += got.len() as u64;
    }
    producer.join().map_err(|_| crate::Error::Closed)??;
    let took = started.elapsed();
    let s = ch.stats();
    println!(
        "sent and received {received} events of {event_size} B in {:.2} s: {:.0} events/s, {} commits, {} fsyncs",
        took.as_secs_f64(),
        received as f64 / took.as_secs_f64(),
        s.commits,
        s.fsyncs
    );
    // Leave a backlog, drop the channel without closing it (a crash, as far as the files are
    // concerned), and replay.
    let mut tx = ch.transaction();
    for i in 0..1000 {
        tx.put(Event::new(format!("left behind {i}").into_bytes()))?;
    }
    tx.commit()?;
    drop(ch);
    let ch = FileChannel::open(demo_config(&dir))?;
    let r = ch.recovery_report();
    println!(
        "after a simulated crash, replay restored {} events in {:.1} ms (checkpoint: {:?}, {} records scanned)",
        r.events_restored,
        r.duration.as_secs_f64() * 1e3,
        r.checkpoint_generation,
        r.records_scanned
    );
    let mut tx = ch.transaction();
    let drained = tx.take_batch(10_000, Duration::ZERO)?.len();
    tx.commit()?;
    ch.close()?;
    println!(
        "drained {drained} events; the channel is empty and closed. Files: {}",
        dir.display()
    );
    Ok(())
}

fn inspect(args: ChannelArgs, json: bool) -> crate::Result<()> {
    let mut cfg =
        FileChannelConfig::new(args.checkpoint_dir, args.data_dirs).minimum_required_space(1 << 20);
    if args.skip_corrupt {
        cfg = cfg.recovery_mode(RecoveryMode::Skip);
    }
    let ch = FileChannel::open(cfg)?;
    let s = ch.stats();
    let r = ch.recovery_report().clone();
    if json {
        let v = serde_json::json!({
            "events_queued": s.size,
            "bytes_queued": s.bytes,
            "segments": s.segments,
            "replay": {
                "events_restored": r.events_restored,
                "inflight_redelivered": r.inflight_redelivered,
                "checkpoint_generation": r.checkpoint_generation,
                "checkpoint_fallbacks": r.checkpoint_fallbacks,
                "full_replay": r.full_replay,
                "segments_scanned": r.segments_scanned,
                "records_scanned": r.records_scanned,
                "bytes_scanned": r.bytes_scanned,
                "torn_tails": r.torn_tails,
                "torn_bytes_truncated": r.torn_bytes_truncated,
                "corrupt_records_skipped": r.corrupt_records_skipped,
                "corrupt_segments_skipped": r.corrupt_segments_skipped,
                "uncommitted_transactions_discarded": r.uncommitted_transactions_discarded,
                "duration_ms": r.duration.as_secs_f64() * 1e3,
            }
        });
        println!("{v}");
    } else {
        println!("events queued:        {}", s.size);
        println!("bytes queued:         {}", s.bytes);
        println!("segments:             {}", s.segments);
        println!("checkpoint used:      {:?}", r.checkpoint_generation);
        for f in &r.checkpoint_fallbacks {
            println!("  not used: {f}");
        }
        println!("full replay:          {}", r.full_replay);
        println!(
            "records scanned:      {} ({} bytes, {} segments)",
            r.records_scanned, r.bytes_scanned, r.segments_scanned
        );
        println!(
            "torn tails truncated: {} ({} bytes)",
            r.torn_tails, r.torn_bytes_truncated
        );
        println!(
            "corrupt skipped:      {} records, {} segments",
            r.corrupt_records_skipped, r.corrupt_segments_skipped
        );
        println!(
            "uncommitted discarded:{}",
            r.uncommitted_transactions_discarded
        );
        println!(
            "replay took:          {:.1} ms",
            r.duration.as_secs_f64() * 1e3
        );
    }
    ch.close()
}
