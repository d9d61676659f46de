//! `tidegate verify`: an offline integrity check (see [`crate::offline::verify`]).

use std::process::ExitCode;

use super::channel_args::{ChannelArgs, fail};
use crate::offline::{self, VerifyReport};

/// Checks every segment, every record's CRC and the checkpoints against the log of a channel
/// that is not open. Exits 0 when it is intact (torn tails are normal after a crash: any open
/// zeroes them), 1 when something is damaged, 2 when it could not run.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    channel: ChannelArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn json(r: &VerifyReport) -> serde_json::Value {
    serde_json::json!({
        "damaged": r.is_damaged(),
        "segments": r.segments.len(),
        "segment_bytes": r.segments.iter().map(|s| s.file_len).sum::<u64>(),
        "records": r.records,
        "record_bytes": r.record_bytes,
        "checkpoints": r.checkpoints,
        "checkpoint_used": r.checkpoint_used,
        "events_queued": r.events_queued,
        "in_flight": r.in_flight,
        "bytes_queued": r.bytes_queued,
        "strict_open_error": r.strict_open_error,
        "encrypted_records": r.encrypted_records,
        "tags_checked": r.tags_checked,
        "problems": r.problems.iter().map(|p| serde_json::json!({
            "kind": p.kind.label(),
            "damage": p.is_damage(),
            "file": p.path,
            "offset": p.offset,
            "len": p.len,
            "detail": p.detail,
        })).collect::<Vec<_>>(),
    })
}

/// Runs `tidegate verify`.
pub fn run(args: VerifyArgs) -> ExitCode {
    let dirs = match args.channel.dirs() {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let r = match offline::verify(&dirs) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if args.json {
        println!("{}", json(&r));
    } else {
        let bytes: u64 = r.segments.iter().map(|s| s.file_len).sum();
        println!("segments:       {} ({bytes} bytes)", r.segments.len());
        println!(
            "records:        {} valid ({} bytes)",
            r.records, r.record_bytes
        );
        println!(
            "checkpoints:    {} (replay uses {})",
            r.checkpoints,
            r.checkpoint_used
                .map_or("none: a full replay".to_owned(), |g| format!(
                    "generation {g}"
                ))
        );
        let how = if r.strict_open_error.is_some() {
            " (what skip mode or `tidegate repair` would keep)"
        } else {
            ""
        };
        println!(
            "events queued:  {}{how}, {} of them in flight at the checkpoint, {} bytes",
            r.events_queued, r.in_flight, r.bytes_queued
        );
        match &r.strict_open_error {
            None => println!("strict open:    ok"),
            Some(e) => println!("strict open:    refused: {e}"),
        }
        if r.encrypted_records > 0 {
            let how = if r.tags_checked {
                "every tag checked"
            } else {
                "tags not checked: no key given (--key ID=PATH)"
            };
            println!("encrypted:      {} records, {how}", r.encrypted_records);
        }
        println!("problems:       {}", r.problems.len());
        for p in &r.problems {
            println!(
                "  {:<16} {} offset {} ({} bytes): {}",
                p.kind.label(),
                p.path.display(),
                p.offset,
                p.len,
                p.detail
            );
        }
        if r.is_damaged() {
            println!(
                "verdict:        DAMAGED (see docs/operations.md; `tidegate repair` saves every undamaged event)"
            );
        } else {
            println!("verdict:        ok");
        }
    }
    if r.is_damaged() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
