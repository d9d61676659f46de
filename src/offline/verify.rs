//! `verify`: an offline integrity check of a channel.
//!
//! It checks every segment header and every record (with [`super::scan`]), every checkpoint
//! file (does it decode; does replay accept it against the log), and runs replay in `strict`
//! mode on a read-only view to say whether the channel opens and what it would hold. When
//! strict mode refuses, the counts come from a `skip`-mode replay (what `recovery_mode = skip`,
//! or `tidegate repair`, would keep). Nothing on disk changes.
//!
//! Given keys ([`ChannelDirs::encryption`]), it also decrypts every encrypted Put record: a key
//! that is not given, or that decrypts none of its records, is an error naming the key and the
//! first record; a single record that does not authenticate is a damaged record (its bytes were
//! changed and its CRCs recomputed). Without keys the encrypted records are only counted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::scan::{self, Problem, ProblemKind, SegmentInfo};
use super::{ChannelDirs, Session};
use crate::config::RecoveryMode;
use crate::error::{Error, Result};
use crate::format::record::{FLAG_ENCRYPTED, Kind};
use crate::format::{DecodeError, checkpoint, file_name};
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
    /// Valid Put records whose payload is encrypted.
    pub encrypted_records: u64,
    /// True when keys were given, so every encrypted record's tag was checked (an event that
    /// does not authenticate is a damaged record); false when they were only counted.
    pub tags_checked: bool,
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
    let mut keys = KeyCheck::default();
    let log = scan::scan(&*view, &dirs.data_dirs, &mut |v| {
        if !v.header.kind.holds_events() || v.header.flags & FLAG_ENCRYPTED == 0 {
            return;
        }
        keys.encrypted += 1;
        if session.has_keys() {
            let outcome = if v.header.kind == Kind::PutBatch {
                session
                    .read_batch(v.segment, v.offset, &v.header)
                    .map(|_| ())
            } else {
                session
                    .read_event(v.segment, v.offset, &v.header)
                    .map(|_| ())
            };
            keys.record(v.header.key_id, &v.segment.path, v.offset, outcome.err());
        }
    })?;
    let mut problems = log.problems;
    let keys_counted = keys.encrypted;
    problems.extend(keys.into_problems(&session)?);

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
        encrypted_records: keys_counted,
        tags_checked: session.has_keys(),
    })
}

/// Where a key's first record is, and what authenticating its records found.
#[derive(Default)]
struct KeyOutcome {
    first: Option<(PathBuf, u64)>,
    good: u64,
    failed: Vec<(PathBuf, u64, DecodeError)>,
}

/// The outcome of decrypting every encrypted Put record, per key id.
#[derive(Default)]
struct KeyCheck {
    encrypted: u64,
    per_key: BTreeMap<u16, KeyOutcome>,
}

impl KeyCheck {
    fn record(&mut self, key_id: u16, path: &Path, offset: u64, error: Option<DecodeError>) {
        let k = self.per_key.entry(key_id).or_default();
        k.first.get_or_insert_with(|| (path.to_path_buf(), offset));
        match error {
            None => k.good += 1,
            Some(e) => k.failed.push((path.to_path_buf(), offset, e)),
        }
    }

    /// A key that was not given, or that decrypts none of its records (the wrong key), is an
    /// error naming the key and its first record; single records that do not authenticate are
    /// damaged records.
    fn into_problems(self, session: &Session) -> Result<Vec<Problem>> {
        let mut out = Vec::new();
        for (key_id, k) in self.per_key {
            let Some((path, offset)) = k.first else {
                continue;
            };
            let keyring = session.codec.keyring();
            if !keyring.is_some_and(|r| r.contains(key_id)) {
                return Err(Error::Config {
                    key: "encryption",
                    message: format!(
                        "key {key_id} was not given, but records are encrypted with it (first in {} at offset {offset}); give it with --key {key_id}=PATH (or --config with the channel's encryption)",
                        path.display()
                    ),
                });
            }
            if k.good == 0 {
                return Err(Error::Config {
                    key: "encryption",
                    message: format!(
                        "key {key_id} ({}) decrypts none of the records encrypted with key {key_id} (first in {} at offset {offset}): it is not the key they were written with",
                        keyring.map_or_else(String::new, |r| r.describe(key_id)),
                        path.display()
                    ),
                });
            }
            for (path, offset, e) in k.failed {
                out.push(Problem {
                    kind: ProblemKind::DamagedRecords,
                    path,
                    offset,
                    len: 0,
                    detail: format!(
                        "the event does not authenticate or decode with key {key_id}: {e} (its CRCs match: the record was changed and its CRCs recomputed)"
                    ),
                });
            }
        }
        Ok(out)
    }
}
