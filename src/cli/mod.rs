//! The `tidegate` command line (feature `cli`). The binary in `src/bin/tidegate.rs` only calls
//! [`main`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

pub mod agent;
pub mod bench;
pub mod convert;
pub mod validate;

use crate::{Event, FileChannel, FileChannelConfig, FsyncPolicy};

mod channel_args;
mod crashtest;
mod inspect;
mod repair;
mod verify;

/// tidegate: a durable event channel (a write-ahead log with checkpoints).
#[derive(Debug, Parser)]
#[command(name = "tidegate", version, about)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `tidegate=debug`.
    #[arg(long, global = true, default_value = "info", env = "TIDEGATE_LOG")]
    pub log: String,
    /// Log format: `text` (human) or `json` (one object per line).
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
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
    /// Prints the tidegate TOML equivalent of a Flume agent's properties file.
    Convert(convert::ConvertArgs),
    /// A summary of a channel that is not open (read-only).
    Inspect(inspect::InspectArgs),
    /// Offline integrity check of a channel that is not open.
    Verify(verify::VerifyArgs),
    /// Saves every undamaged event of a damaged channel (damaged bytes go to quarantine files).
    Repair(repair::RepairArgs),
    /// Kills a process writing a channel on your storage, again and again, and checks that
    /// nothing acknowledged is lost.
    Crashtest(crashtest::CrashtestArgs),
    /// The child process of `crashtest`.
    #[command(hide = true)]
    CrashtestChild(crashtest::CrashtestChildArgs),
    /// Runs an agent: sources put events into channels, sinks drain them.
    Agent(agent::AgentArgs),
    /// Checks an agent config without running it; prints the resolved topology, or every
    /// problem with its key and line (exit code 78).
    Validate(validate::ValidateArgs),
    /// Benchmarks a storage backend through a real channel, against the raw disk in the same run.
    Bench(Box<bench::BenchArgs>),
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let result = match cli.command {
        Command::Demo {
            dir,
            events,
            batch,
            event_size,
        } => demo(dir, events, batch, event_size),
        Command::Inspect(a) => return inspect::run(a),
        Command::Verify(a) => return verify::run(a),
        Command::Repair(a) => return repair::run(a),
        Command::Crashtest(a) => return crashtest::run(a),
        Command::CrashtestChild(a) => return crashtest::run_child(a),
        Command::Convert(args) => return convert::run(args),
        Command::Agent(args) => return agent::run(args),
        Command::Validate(args) => return validate::run(args),
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
