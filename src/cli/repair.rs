//! `tidegate repair` (see [`crate::offline::repair`]).

use std::process::ExitCode;

use super::channel_args::{ChannelArgs, fail};
use crate::offline::{self, RepairReport};

/// Saves damaged bytes to quarantine files beside their segments, moves them out of the log,
/// and writes a checkpoint that holds every undamaged event, so a channel that strict mode
/// refused opens again. Safe to interrupt: run it again. Exits 0 when nothing committed was
/// lost, 1 when events could not be saved (the report says how many), 2 when it could not run.
#[derive(Debug, clap::Args)]
pub struct RepairArgs {
    #[command(flatten)]
    channel: ChannelArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn json(r: &RepairReport) -> serde_json::Value {
    serde_json::json!({
        "changed": !r.nothing_to_do(),
        "headers_rewritten": r.headers_rewritten,
        "regions_quarantined": r.regions_quarantined,
        "bytes_quarantined": r.bytes_quarantined,
        "quarantine_files": r.quarantine_files,
        "events_restored": r.events_restored,
        "events_lost": r.events_lost,
        "records_lost": r.records_lost,
        "uncommitted_transactions": r.uncommitted_transactions,
        "checkpoint_written": r.checkpoint_written,
        "problems": r.problems.iter().map(|p| serde_json::json!({
            "kind": p.kind.label(), "file": p.path, "offset": p.offset, "len": p.len,
            "detail": p.detail,
        })).collect::<Vec<_>>(),
    })
}

/// Runs `tidegate repair`.
pub fn run(args: RepairArgs) -> ExitCode {
    let dirs = match args.channel.dirs() {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let r = match offline::repair(&dirs) {
        Ok(r) => r,
        Err(e) => return fail(format!("{e} (the channel is safe to repair again)")),
    };
    if args.json {
        println!("{}", json(&r));
    } else if r.nothing_to_do() {
        println!("nothing to repair: the channel opens in strict mode as it is");
    } else {
        for p in &r.problems {
            println!(
                "found {:<16} {} offset {} ({} bytes)",
                p.kind.label(),
                p.path.display(),
                p.offset,
                p.len
            );
        }
        println!("segment headers rewritten: {}", r.headers_rewritten);
        println!(
            "quarantined:               {} ranges, {} bytes",
            r.regions_quarantined, r.bytes_quarantined
        );
        for f in &r.quarantine_files {
            println!("  {}", f.display());
        }
        if let Some(g) = r.checkpoint_written {
            println!("checkpoint written:        generation {g}");
        }
        println!("events restored:           {}", r.events_restored);
        println!(
            "could not save:            {} records in damaged ranges; {} of them committed events",
            r.records_lost, r.events_lost
        );
        if r.uncommitted_transactions > 0 {
            println!(
                "not restored:              {} transactions without a Commit record (never \
                 committed, or their Commit was damaged)",
                r.uncommitted_transactions
            );
        }
    }
    if r.events_lost > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
