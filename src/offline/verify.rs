//! `verify`: an offline integrity check of a channel.
//!
//! It checks every segment header and every record (with [`super::scan`]), every checkpoint
//! file (does it decode; does replay accept it against the log), and runs replay in `strict`
//! mode on a read-only view to say whether the channel opens and what it would hold. When
//! strict mode refuses, the counts come from a `skip`-mode replay (what `recovery_mode = skip`,
//! or `tidegate repair`, would keep). Nothing on disk changes.

use std::path::PathBuf;

use super::scan::{self, Problem, ProblemKind, SegmentInfo};
use super::{ChannelDirs, Session};
use crate::config::RecoveryMode;
use crate::error::Result;
use crate::format::{checkpoint, file_name};
use crate::replay;

/// What `verify` found.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Every segment, per directory in id order.
    pub segments: Vec<SegmentInfo>,
    /// Valid records.
    pub records: u64,
    /// Bytes of valid records.
    pub record_bytes: u64,
    /// Checkpoint files found.
    pub checkpoints: u64,
    /// The checkpoint replay uses, if any.
    pub checkpoint_used: Option<u64>,
    /// Events an open restores (from a `skip`-mode replay when strict mode refuses).
    pub events_queued: u64,
    /// Of those, takes that were in flight at the checkpoint and are delivered again.
    pub in_flight: u64,
    /// Payload bytes of the queued events.
    pub bytes_queued: u64,
    /// Why a `strict` open refuses, or `None` when it opens.
    pub strict_open_error: Option<String>,
    /// Every problem found, with its file and offset.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when something is damaged: a strict open refuses, or a problem other than a torn
    /// tail (which every open repairs by itself) was found.
    pub fn is_damaged(&self) -> bool {
        self.strict_open_error.is_some() || self.problems.iter().any(Problem::is_damage)
    }
}

/// Verifies the channel in `dirs`. Fails when a directory is missing or locked (the channel is
/// open), or on an I/O error; damage is reported, not returned as an error.
pub fn verify(dirs: &ChannelDirs) -> Result<VerifyReport> {
    let session = Session::open(dirs)?;
    let view = session.view();
    let log = scan::scan(&*view, &dirs.data_dirs, &mut |_| {})?;
    let mut problems = log.problems;

    let (rec, strict_open_error) = match session.replay(RecoveryMode::Strict) {
        Ok(rec) => (rec, None),
        Err(e) => (session.replay(RecoveryMode::Skip)?, Some(e.to_string())),
    };

    // Checkpoint files: damaged ones, then the ones replay did not accept.
    let names = view
        .list_dir(&dirs.checkpoint_dir)
        .map_err(|e| crate::Error::io("listing checkpoint dir", &dirs.checkpoint_dir, e))?;
    let mut generations: Vec<u64> = names
        .iter()
        .filter_map(|n| file_name::parse_checkpoint(n))
        .collect();
    generations.sort_unstable();
    let path_of = |g: u64| -> PathBuf { dirs.checkpoint_dir.join(file_name::checkpoint(g)) };
    for &g in &generations {
        let path = path_of(g);
        let decoded = replay::read_file(&*view, &path)
            .map_err(|e| e.to_string())
            .and_then(|b| checkpoint::decode(&b).map_err(|e| e.to_string()));
        if let Err(detail) = decoded {
            problems.push(Problem {
                kind: ProblemKind::Checkpoint,
                path,
                offset: 0,
                len: 0,
                detail: format!("checkpoint does not decode: {detail}"),
            });
        }
    }
    // Every checkpoint against the log, not only the one replay picks: replay on a view in
    // which the newer checkpoint files are hidden, so replay tries this one first.
    let mode = if strict_open_error.is_none() {
        RecoveryMode::Strict
    } else {
        RecoveryMode::Skip
    };
    for (i, &g) in generations.iter().enumerate() {
        if problems.iter().any(|p| p.path == path_of(g)) {
            continue; // does not decode: reported above
        }
        let hidden = session.view();
        for &newer in &generations[i + 1..] {
            hidden
                .remove_file(&path_of(newer))
                .map_err(|e| crate::Error::io("hiding checkpoint", path_of(newer), e))?;
        }
        let tried = session.replay_on(hidden, mode)?;
        if tried.report.checkpoint_generation != Some(g) {
            let reason = tried
                .report
                .checkpoint_fallbacks
                .iter()
                .find(|r| r.starts_with(&format!("checkpoint generation {g}:")))
                .cloned()
                .unwrap_or_else(|| format!("checkpoint generation {g}: not usable"));
            problems.push(Problem {
                kind: ProblemKind::Checkpoint,
                path: path_of(g),
                offset: 0,
                len: 0,
                detail: format!("does not agree with the log: {reason}"),
            });
        }
    }

    Ok(VerifyReport {
        segments: log.segments,
        records: log.records,
        record_bytes: log.record_bytes,
        checkpoints: generations.len() as u64,
        checkpoint_used: rec.report.checkpoint_generation,
        events_queued: rec.state.len() as u64,
        in_flight: rec.report.inflight_redelivered,
        bytes_queued: rec.state.queued_bytes,
        strict_open_error,
        problems,
    })
}
