//! Writing checkpoints and collecting the segments they make unnecessary. [`run`] is called by
//! the checkpointer thread (`src/background.rs`) and by `close()`.
//!
//! # Protocol (DESIGN.md, "Checkpoint protocol", is normative)
//! 1. **Snapshot** under every log's append lock and the state lock, held only to copy: each
//!    directory's tail, the queue (takes in flight first), the transactions whose Commit is
//!    appended but not applied (`committing`), and `scan_start`: the lowest of the tail, the
//!    first record of every open put transaction that already wrote records, and the first
//!    record of every committing transaction. No I/O happens under these locks.
//! 2. **Sync the log** of every directory up to its snapshot tail (whatever the fsync policy), so
//!    the checkpoint never names bytes that are not durable.
//! 3. **Write** `checkpoint.tmp` in 256 KiB pieces, starting each piece's writeback as it is
//!    written, at no more than `checkpoint_write_rate`; `fsync` it, rename it to
//!    `checkpoint-{generation}`, `fsync` the directory. Only now does the new checkpoint exist.
//! 4. **Prune**: remove every checkpoint file but this one and the previous durable one (the
//!    backup), `fsync` the directory.
//! 5. **Collect** segments: a segment is deleted when it lies wholly before the replay start of
//!    both kept checkpoints, neither kept checkpoint's queue refers to it, it is not a
//!    directory's active segment, it holds no queued or in-flight event, and it holds no Commit
//!    record of an event still queued in an older segment; then the directory is synced.

use std::time::{Duration, Instant, SystemTime};

use crate::background;
use crate::error::{Error, Result};
use crate::file_channel::Inner;
use crate::format::checkpoint::{self, Checkpoint, DirCheckpoint};
use crate::format::file_name;
use crate::ids::{LogPosition, RecordPtr, SegmentId};
use crate::io::StorageFile;
use crate::log::DirLog;
use crate::replay::KeptCheckpoint;
use crate::segment::now_ms;
use crate::stats::Counters;

/// Checkpoint bookkeeping (serialized by its own mutex: one checkpoint at a time).
#[derive(Debug)]
pub(crate) struct Checkpointer {
    pub(crate) next_generation: u64,
    /// The newest durable checkpoint (written, or used by replay): the backup once the next one
    /// is written.
    pub(crate) previous: Option<KeptCheckpoint>,
}

/// The segments a queue points into. The queue runs through segments in order, so hashing one
/// id per run of equal ids (a handful) instead of one per event (millions) keeps this cheap:
/// it was most of a large checkpoint's CPU time.
fn segments_of(queue: &[RecordPtr]) -> rustc_hash::FxHashSet<SegmentId> {
    let mut out = rustc_hash::FxHashSet::default();
    let mut last = None;
    for p in queue {
        if last != Some(p.segment) {
            out.insert(p.segment);
            last = Some(p.segment);
        }
    }
    out
}

/// Writes one checkpoint and collects garbage. Returns the generation written.
pub(crate) fn run(inner: &Inner) -> Result<u64> {
    let mut ck = inner.checkpointer.lock();
    inner.poison.check()?;
    let started = Instant::now();

    // 1. Snapshot.
    let (mut snapshot, appended, queue) = {
        let tails = DirLog::lock_tails(&inner.logs);
        let st = inner.state.lock();
        let queue = st.snapshot_queue();
        let dirs = tails
            .tails
            .iter()
            .enumerate()
            .map(|(i, t)| {
                // Replay must read every open spilled transaction and every committing one
                // from its first record.
                let scan_start = st
                    .open_spills
                    .values()
                    .chain(st.committing.values())
                    .filter(|(d, _)| *d == i)
                    .map(|(_, p)| *p)
                    .fold(t.position, LogPosition::min);
                DirCheckpoint {
                    tail: t.position,
                    scan_start,
                }
            })
            .collect();
        let snapshot = Checkpoint {
            generation: ck.next_generation,
            created_ms: now_ms(),
            last_seq: inner.shared.seq.load(std::sync::atomic::Ordering::SeqCst),
            next_txn: inner.next_txn.load(std::sync::atomic::Ordering::SeqCst),
            queued_bytes: st.queued_bytes,
            inflight: queue.inflight(),
            dirs,
            committing: st.committing.keys().copied().collect(),
            commit_pins: st.commit_pin_list(),
            queue: Vec::new(),
        };
        let appended: Vec<u64> = tails.tails.iter().map(|t| t.appended).collect();
        (snapshot, appended, queue)
    };

    // 2. The log must be durable up to the snapshot.
    for (log, target) in inner.logs.iter().zip(&appended) {
        log.sync_to(*target)?;
    }

    // 3. Copy the pointers (no lock held: the snapshot shares the queue's chunks), encode, write,
    //    sync, rename, sync the directory: the bulk of a checkpoint's CPU time, done at a lower
    //    CPU priority so that committing threads go first (src/background.rs).
    let generation = snapshot.generation;
    let (snapshot, pins, written) = background::at_lower_priority(move || {
        snapshot.queue = queue.into_vec();
        let pins = segments_of(&snapshot.queue);
        let written = write_checkpoint(inner, generation, &checkpoint::encode(&snapshot));
        (snapshot, pins, written)
    });
    if let Err(e) = written {
        Counters::add(&inner.counters.checkpoint_write_errors, 1);
        tracing::error!(error = %e, "checkpoint failed; the previous one stays in force");
        return Err(e);
    }
    ck.next_generation = generation.saturating_add(1);

    // 4. Keep this generation and the previous durable one (not merely the previous number:
    //    after a fallback replay, a newer damaged or rejected file must not stay as the backup).
    let keep = [Some(generation), ck.previous.as_ref().map(|p| p.generation)];
    let pruned = prune_checkpoints(inner, &keep);

    // 5. Collect segments neither kept checkpoint needs.
    let kept = KeptCheckpoint {
        generation,
        scan_starts: snapshot.dirs.iter().map(|d| Some(d.scan_start)).collect(),
        pins,
    };
    // Only when no other checkpoint file is left: a replay could otherwise pick a stale one
    // that names segments collected now.
    if let Some(previous) = ck.previous.as_ref().filter(|_| pruned) {
        collect_segments(inner, &kept, previous);
    }
    ck.previous = Some(kept);

    let took = started.elapsed();
    *inner.last_checkpoint.lock() = Some((SystemTime::now(), took));
    Counters::add(&inner.counters.checkpoints, 1);
    tracing::debug!(
        generation,
        events = snapshot.queue.len(),
        ms = took.as_millis() as u64,
        "checkpoint written"
    );
    Ok(generation)
}

fn write_checkpoint(inner: &Inner, generation: u64, bytes: &[u8]) -> Result<()> {
    let fs = &*inner.cfg.file_system;
    let dir = &inner.cfg.checkpoint_dir;
    let tmp = dir.join(file_name::CHECKPOINT_TMP);
    let path = dir.join(file_name::checkpoint(generation));
    let free = fs
        .free_space(dir)
        .map_err(|e| Error::io("checking free space", dir, e))?;
    if free < bytes.len() as u64 + (1 << 20) {
        return Err(Error::InsufficientSpace {
            dir: dir.clone(),
            available: free,
            required: bytes.len() as u64 + (1 << 20),
        });
    }
    let _ = fs.remove_file(&tmp);
    let file = fs
        .create_new(&tmp)
        .map_err(|e| Error::io("creating checkpoint", &tmp, e))?;
    if let Err(e) = write_paced(inner, &*file, bytes) {
        drop(file);
        let _ = fs.remove_file(&tmp);
        return Err(Error::io("writing checkpoint", &tmp, e));
    }
    // A failed sync is never retried or trusted: the channel is poisoned.
    if let Err(e) = file.sync_all() {
        return Err(inner
            .poison
            .poison(&Error::io("syncing checkpoint", &tmp, e)));
    }
    drop(file);
    if let Err(e) = fs.rename(&tmp, &path) {
        let _ = fs.remove_file(&tmp);
        return Err(Error::io("renaming checkpoint", &path, e));
    }
    if let Err(e) = fs.sync_dir(dir) {
        return Err(inner
            .poison
            .poison(&Error::io("syncing checkpoint dir", dir, e)));
    }
    Ok(())
}

/// The size of the pieces a checkpoint file is written in.
const PIECE: usize = 256 << 10;

/// Writes `bytes` from offset 0 in [`PIECE`]s, starting each one's writeback as soon as it is
/// written, at no more than `checkpoint_write_rate`. Without this, the whole file waits in the
/// page cache for the final `fsync`, which then puts megabytes in the disk's queue in front of
/// every commit's `fdatasync`. Pacing stops once the channel is closing.
fn write_paced(inner: &Inner, file: &dyn StorageFile, bytes: &[u8]) -> std::io::Result<()> {
    let started = Instant::now();
    let mut rate = inner.cfg.checkpoint_write_rate;
    let mut off = 0u64;
    for piece in bytes.chunks(PIECE) {
        file.write_all_at(piece, off)?;
        file.start_writeback(off, piece.len() as u64);
        off += piece.len() as u64;
        if let Some(r) = rate {
            let due = Duration::from_secs_f64(off as f64 / r as f64);
            if let Some(wait) = due.checked_sub(started.elapsed())
                && !inner.background.pause(wait)
            {
                rate = None;
            }
        }
    }
    Ok(())
}

/// Removes every checkpoint file but those in `keep`. Returns false if one could not be removed.
fn prune_checkpoints(inner: &Inner, keep: &[Option<u64>]) -> bool {
    let fs = &*inner.cfg.file_system;
    let dir = &inner.cfg.checkpoint_dir;
    let Ok(names) = fs.list_dir(dir) else {
        return false;
    };
    let mut removed = false;
    let mut clean = true;
    for name in names {
        let Some(g) = file_name::parse_checkpoint(&name) else {
            continue;
        };
        if keep.contains(&Some(g)) {
            continue;
        }
        match fs.remove_file(&dir.join(&name)) {
            Ok(()) => removed = true,
            Err(e) => {
                tracing::warn!(file = name, error = %e, "could not remove an old checkpoint");
                clean = false;
            }
        }
    }
    if removed && let Err(e) = fs.sync_dir(dir) {
        tracing::warn!(error = %e, "syncing the checkpoint dir after pruning failed");
        clean = false;
    }
    clean
}

/// Collects the segments that neither kept checkpoint needs and that hold nothing live: each
/// is deleted or kept for reuse ([`DirLog::retire`](crate::log::DirLog::retire)).
fn collect_segments(inner: &Inner, newest: &KeptCheckpoint, backup: &KeptCheckpoint) {
    let fs = &*inner.cfg.file_system;
    for (i, log) in inner.logs.iter().enumerate() {
        let (Some(Some(a)), Some(Some(b))) = (newest.scan_starts.get(i), backup.scan_starts.get(i))
        else {
            continue; // a directory one of them does not know: keep everything
        };
        let keep_from = (*a).min(*b);
        let active = log.active_segment();
        let candidates: Vec<_> = inner
            .segments
            .ids_in_dir(i)
            .into_iter()
            .filter(|id| *id < keep_from.segment && *id != active)
            .filter(|id| !newest.pins.contains(id) && !backup.pins.contains(id))
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let dead: Vec<SegmentId> = {
            let mut st = inner.state.lock();
            let protected = st.commit_pinned();
            candidates
                .into_iter()
                .filter(|id| !st.live.contains_key(id) && !protected.contains(id))
                .collect::<Vec<_>>()
                .into_iter()
                .inspect(|id| st.forget_segment(*id))
                .collect()
        };
        let mut deleted = 0;
        for id in dead {
            if let Some(seg) = inner.segments.remove(id) {
                // Below the free-space floor, collected segments are deleted, not kept.
                let keep = !inner.space_low.load(std::sync::atomic::Ordering::Relaxed);
                match log.retire(&seg, keep) {
                    Ok(()) => deleted += 1,
                    Err(e) => {
                        tracing::warn!(segment = %seg.path.display(), error = %e, "could not delete or keep for reuse a collected segment")
                    }
                }
            }
        }
        if deleted > 0 {
            if let Err(e) = fs.sync_dir(&log.path) {
                tracing::warn!(dir = %log.path.display(), error = %e, "syncing data dir after deleting segments failed");
            }
            Counters::add(&inner.counters.segments_deleted, deleted);
            tracing::debug!(dir = %log.path.display(), deleted, "segments collected");
        }
    }
}
