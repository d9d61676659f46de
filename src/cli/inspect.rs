//! `tidegate inspect` (see [`crate::offline::inspect`]).

use std::process::ExitCode;

use super::channel_args::{ChannelArgs, fail};
use crate::RecoveryMode;
use crate::offline::inspect::{self, DumpRecord, InspectReport};

/// A summary of a channel that is not open: what an open would restore (queued events, oldest
/// and newest, segments with sizes and live counts, the checkpoint and its age, free space).
/// Read-only: nothing on disk changes (an open would zero a torn tail; inspect reports it).
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    #[command(flatten)]
    channel: ChannelArgs,
    /// Print JSON (one object; with `--dump`, one object per record) instead of text.
    #[arg(long)]
    json: bool,
    /// Print every record (headers, sizes, ids) instead of the summary.
    #[arg(long)]
    dump: bool,
    /// Summarise what `recovery_mode = skip` would restore from a damaged channel (the default
    /// is the channel's `recovery_mode` with `--config`, else `strict`).
    #[arg(long)]
    skip_corrupt: bool,
}

fn json(r: &InspectReport) -> serde_json::Value {
    let ev = |e: &Option<inspect::EventSummary>| {
        e.map(|e| {
            serde_json::json!({
                "segment": e.ptr.segment.0, "offset": e.ptr.record_offset(),
                "index": e.ptr.index(), "seq": e.seq,
                "txn": e.txn, "payload_len": e.payload_len,
            })
        })
    };
    let rr = &r.recovery;
    serde_json::json!({
        "events_queued": r.events_queued,
        "in_flight": r.in_flight,
        "bytes_queued": r.bytes_queued,
        "oldest": ev(&r.oldest),
        "newest": ev(&r.newest),
        "segments": r.segments.iter().map(|s| serde_json::json!({
            "id": s.id, "dir": s.dir, "file": s.path, "size": s.size, "recycled": s.recycled, "live_events": s.live_events,
        })).collect::<Vec<_>>(),
        "checkpoint": r.checkpoint.as_ref().map(|c| serde_json::json!({
            "generation": c.generation, "created_ms": c.created_ms,
            "age_s": c.age.as_secs_f64(), "events": c.events,
        })),
        "free_space": r.free_space.iter().map(|(d, f)| serde_json::json!({"dir": d, "bytes": f}))
            .collect::<Vec<_>>(),
        "replay": {
            "checkpoint_generation": rr.checkpoint_generation,
            "checkpoint_fallbacks": rr.checkpoint_fallbacks,
            "full_replay": rr.full_replay,
            "segments_scanned": rr.segments_scanned,
            "records_scanned": rr.records_scanned,
            "torn_tails": rr.torn_tails,
            "torn_bytes": rr.torn_bytes_truncated,
            "corrupt_records_skipped": rr.corrupt_records_skipped,
            "corrupt_segments_skipped": rr.corrupt_segments_skipped,
            "uncommitted_transactions_discarded": rr.uncommitted_transactions_discarded,
            "duration_ms": rr.duration.as_secs_f64() * 1e3,
        }
    })
}

fn text(r: &InspectReport) {
    println!(
        "events queued:   {} ({} bytes), {} of them in flight at the checkpoint",
        r.events_queued, r.bytes_queued, r.in_flight
    );
    for (what, e) in [("oldest", &r.oldest), ("newest", &r.newest)] {
        if let Some(e) = e {
            println!(
                "{what}:          {} (seq {}, txn {}, {} bytes)",
                e.ptr, e.seq, e.txn, e.payload_len
            );
        }
    }
    match &r.checkpoint {
        Some(c) => println!(
            "checkpoint:      generation {}, {} events, written {:.1} s ago",
            c.generation,
            c.events,
            c.age.as_secs_f64()
        ),
        None => println!("checkpoint:      none usable (an open replays every segment)"),
    }
    for f in &r.recovery.checkpoint_fallbacks {
        println!("  not used: {f}");
    }
    println!("segments:        {}", r.segments.len());
    for s in &r.segments {
        println!(
            "  {:>10}  {:>12} bytes  {:>9} live  {}{}",
            s.id,
            s.size,
            s.live_events,
            s.path.display(),
            if s.recycled { "  (recycled)" } else { "" }
        );
    }
    for (d, f) in &r.free_space {
        println!("free space:      {f} bytes on {}", d.display());
    }
    let rr = &r.recovery;
    println!(
        "an open would:   scan {} records in {} segments; zero {} torn tails ({} bytes); skip {} damaged records",
        rr.records_scanned,
        rr.segments_scanned,
        rr.torn_tails,
        rr.torn_bytes_truncated,
        rr.corrupt_records_skipped
    );
}

/// Prints one record; a closed stdout (`| head`) ends the output quietly.
fn dump_line(d: &DumpRecord, json: bool) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = if json {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "file": d.path, "offset": d.offset, "kind": d.kind, "seq": d.seq,
                "txn": d.txn, "size": d.size, "detail": d.detail,
            })
        )
    } else {
        writeln!(
            out,
            "{} @{:<10} {:<8} seq {:<12} txn {:<12} {:>8} B  {}",
            d.path.file_name().map_or_else(
                || d.path.display().to_string(),
                |n| n.to_string_lossy().into_owned()
            ),
            d.offset,
            d.kind,
            d.seq,
            d.txn,
            d.size,
            d.detail
        )
    };
}

/// Runs `tidegate inspect`.
pub fn run(args: InspectArgs) -> ExitCode {
    let dirs = match args.channel.dirs() {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    if args.dump {
        let problems = match inspect::dump(&dirs, &mut |d| dump_line(&d, args.json)) {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        for p in problems {
            eprintln!(
                "{} {} offset {} ({} bytes): {}",
                p.kind.label(),
                p.path.display(),
                p.offset,
                p.len,
                p.detail
            );
        }
        return ExitCode::SUCCESS;
    }
    let mode = if args.skip_corrupt {
        RecoveryMode::Skip
    } else {
        dirs.recovery_mode
    };
    match inspect::inspect(&dirs, mode) {
        Ok(r) if args.json => println!("{}", json(&r)),
        Ok(r) => text(&r),
        Err(e) => return fail(e),
    }
    ExitCode::SUCCESS
}
