//! `repair`: makes a channel that `strict` mode refuses open again, with every undamaged event,
//! and keeps every damaged byte in a quarantine file beside its segment.
//!
//! # Steps
//! 1. Lock the directories; remove leftover `*.quarantine.tmp` files.
//! 2. **Segment headers.** For each segment whose header is damaged: save its 64 header bytes to
//!    a quarantine file (durably), then write a fresh header (the id comes from the file name)
//!    and `fdatasync` the segment, so replay reads its records again.
//! 3. **Scan** every record ([`super::scan`]) and replay in `skip` mode on a read-only view:
//!    the queue skip mode would restore, minus every event whose record is damaged, is the queue
//!    the repaired channel holds.
//! 4. **Quarantine** every damaged range and torn tail: `NAME.quarantine.tmp`, write, `fsync`,
//!    rename, `fsync` the data directory (format in [`crate::format::quarantine`]).
//! 5. **Checkpoint.** Write a new checkpoint (the next generation) holding that queue, whose
//!    tail and replay start in each directory are the end of the valid log in its newest segment:
//!    `checkpoint.tmp`, `fsync`, rename, `fsync` the checkpoint directory.
//! 6. Remove the older checkpoints (they name damaged records) and `fsync` the directory.
//! 7. **Patch the log.** Overwrite each damaged range that valid records follow in its segment
//!    with one inert record of the same length (a Put, or a Rollback for 36 bytes, of
//!    transaction 0, which never commits, with a sequence number between its neighbours'), and
//!    zero damaged ranges at the end of a segment and torn tails; `fdatasync` each segment.
//! 8. Replay in `strict` mode on a read-only view to check that the channel now opens with
//!    exactly the queue of step 5.
//!
//! # Why an interruption is safe
//! No step destroys a byte before a durable copy of it exists: header bytes and damaged ranges
//! are overwritten only after their quarantine file, and its directory entry, are synced. Until
//! the checkpoint of step 5 is durable, the channel is as it was (plus repaired headers, which
//! only make readable what was there): strict mode refuses it, and running `repair` again starts
//! over. Once that checkpoint is durable, an open uses it (it is the newest) and reads the log
//! only from its tails, past every damaged range, and every event it lists is an intact Put
//! record; so steps 6 and 7 only tidy up (a full replay, verify, older checkpoints), and a crash
//! during them leaves a channel that opens. A second run finds any range step 7 did not finish,
//! saves it again (quarantine names carry a timestamp, so the first copy is never overwritten),
//! and finishes. DESIGN.md ("Repair") has the same argument.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::scan::{self, Placement, Problem, Region};
use super::{ChannelDirs, Session};
use crate::config::RecoveryMode;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::format::checkpoint::{self, Checkpoint, DirCheckpoint};
use crate::format::quarantine::{self, Quarantined, Reason};
use crate::format::record::{self, Kind, MARKER_PAYLOAD_LEN};
use crate::format::{file_name, segment_header};
use crate::ids::{LogPosition, RecordPtr, SegmentId};
use crate::io::FileSystem;
use crate::replay::{self, Payload};
use crate::segment::{self, Segment, now_ms};

/// What `repair` did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RepairReport {
    /// Segment headers rewritten.
    pub headers_rewritten: u64,
    /// Damaged ranges (and torn tails) saved and moved out of the log.
    pub regions_quarantined: u64,
    /// Their bytes.
    pub bytes_quarantined: u64,
    /// The quarantine files written.
    pub quarantine_files: Vec<PathBuf>,
    /// Events the repaired channel holds.
    pub events_restored: u64,
    /// Events known to be committed (listed by the checkpoint, or named by an intact Commit
    /// record) whose record is damaged: they are not restored.
    pub events_lost: u64,
    /// Records in the damaged ranges (Puts, Takes, Commits, Rollbacks), counted from the gaps
    /// they leave in the sequence numbers: exact with one data directory, an upper bound with
    /// several. Torn tails are not counted (nothing in them was acknowledged).
    pub records_lost: u64,
    /// Transactions whose records survive but whose Commit record is not found (it may be
    /// among the damaged bytes): their events are not restored, as nothing proves they committed.
    pub uncommitted_transactions: u64,
    /// The checkpoint written, when repair changed anything.
    pub checkpoint_written: Option<u64>,
    /// Problems found before the repair.
    pub problems: Vec<Problem>,
}

impl RepairReport {
    /// True when repair changed nothing (no damage was found).
    pub fn nothing_to_do(&self) -> bool {
        self.checkpoint_written.is_none()
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(op, path, e)
}

/// Writes `bytes` to `dir/name` durably: a temporary file, `fsync`, rename, `fsync` of `dir`.
fn write_durably(fs: &dyn FileSystem, dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let _ = fs.remove_file(&tmp);
    let file = fs.create_new(&tmp).map_err(io_err("creating", &tmp))?;
    file.write_all_at(bytes, 0)
        .map_err(io_err("writing", &tmp))?;
    file.sync_all().map_err(io_err("syncing", &tmp))?;
    drop(file);
    fs.rename(&tmp, &path).map_err(io_err("renaming", &path))?;
    fs.sync_dir(dir).map_err(io_err("syncing directory", dir))?;
    Ok(path)
}

fn read_range(seg: &Segment, offset: u64, end: u64) -> Result<Vec<u8>> {
    // A file cut short (file-system damage) keeps what it has.
    let end = end.min(seg.map.len());
    let len = usize::try_from(end.saturating_sub(offset)).unwrap_or(usize::MAX);
    let mut out = vec![0u8; len];
    seg.map
        .read_into(offset, &mut out)
        .map_err(io_err("reading damaged bytes", &seg.path))?;
    Ok(out)
}

/// Saves `offset..end` of `seg` to a quarantine file beside it; returns its path.
fn quarantine_range(
    fs: &dyn FileSystem,
    seg: &Segment,
    offset: u64,
    end: u64,
    reason: Reason,
    report: &mut RepairReport,
) -> Result<()> {
    let bytes = read_range(seg, offset, end)?;
    let created_ms = now_ms();
    let dir = seg.path.parent().unwrap_or(Path::new("."));
    let name = quarantine::file_name(seg.id.0, offset, created_ms);
    let q = Quarantined {
        reason,
        segment_id: seg.id.0,
        offset,
        created_ms,
        bytes,
    };
    let path = write_durably(fs, dir, &name, &quarantine::encode(&q))?;
    tracing::warn!(segment = %seg.path.display(), offset, bytes = q.bytes.len(), quarantine = %path.display(), "damaged bytes saved");
    report.regions_quarantined += 1;
    report.bytes_quarantined += q.bytes.len() as u64;
    report.quarantine_files.push(path);
    Ok(())
}

/// The bytes that replace a damaged range followed by valid records: one record of exactly
/// `len` bytes that replay reads and discards (transaction 0 never commits).
fn filler(len: u64, seq: u64) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let marker_len = (record::HEADER_LEN + MARKER_PAYLOAD_LEN) as u64;
    let unsealed = if len == marker_len {
        record::encode_marker(&mut buf, Kind::Rollback, 0, 0)
    } else if len >= marker_len + 4 {
        let body = usize::try_from(len - marker_len - 4).ok()?;
        if u32::try_from(len).is_err() {
            return None;
        }
        record::encode_put(&mut buf, 0, &Event::new(vec![0u8; body]))
    } else {
        return None;
    };
    record::seal(&mut buf, &unsealed, seq);
    (buf.len() as u64 == len).then_some(buf)
}

/// The header that replaces `seg`'s damaged one. Version 2 (the segment may hold PutBatch
/// records, which an older binary must refuse rather than misread, §3.5; this binary reads
/// every version), unless the chain of records from the start ends at an end marker naming this
/// segment: then it was recycled, and the marker gives back its floor (version 3, §4.6).
fn rebuilt_header(seg: &Segment) -> segment_header::SegmentHeader {
    let mut off = segment_header::LEN as u64;
    let mut hb = [0u8; record::HEADER_LEN];
    while seg.map.read_into(off, &mut hb).is_ok() {
        if let Some((id, floor)) = record::decode_end_marker(&hb) {
            if id == seg.id.0 {
                return segment_header::SegmentHeader::recycled(id, now_ms(), floor);
            }
            break;
        }
        match record::decode_header(&hb) {
            Ok(h) => off = off.saturating_add(h.record_len()),
            Err(_) => break,
        }
    }
    segment_header::SegmentHeader::new(seg.id.0, now_ms(), crate::format::BATCH_FORMAT_VERSION)
}

fn open_real(fs: &dyn FileSystem, seg: &Segment) -> Result<Segment> {
    segment::open(fs, seg.dir, seg.path.clone(), seg.id)
}

/// Repairs the channel in `dirs` (see the module docs for what and in which order).
pub fn repair(dirs: &ChannelDirs) -> Result<RepairReport> {
    let session = Session::open(dirs)?;
    let fs = &*dirs.file_system;
    let mut report = RepairReport::default();
    for d in &dirs.data_dirs {
        for name in fs.list_dir(d).map_err(io_err("listing data dir", d))? {
            if quarantine::is_file_name(name.trim_end_matches(".tmp")) && name.ends_with(".tmp") {
                let _ = fs.remove_file(&d.join(&name));
            }
        }
    }

    // 2. Segment headers.
    let first = scan::scan(&*session.view(), &dirs.data_dirs, &mut |_| {})?;
    for seg in &first.bad_headers {
        quarantine_range(
            fs,
            seg,
            0,
            segment_header::LEN as u64,
            Reason::SegmentHeader,
            &mut report,
        )?;
        let real = open_real(fs, seg)?;
        let header = segment_header::encode(&rebuilt_header(seg));
        real.file
            .write_all_at(&header, 0)
            .map_err(io_err("rewriting segment header", &seg.path))?;
        // A file cut below one header and one end marker becomes an empty segment.
        let min_len = (segment_header::LEN + record::HEADER_LEN) as u64;
        if real
            .file
            .len()
            .map_err(io_err("sizing segment", &seg.path))?
            < min_len
        {
            real.file
                .set_len(min_len)
                .map_err(io_err("extending segment", &seg.path))?;
        }
        real.file
            .sync_data()
            .map_err(io_err("syncing segment", &seg.path))?;
        report.headers_rewritten += 1;
    }

    // 3. Scan and replay (skip mode) on the read-only view.
    let mut commits: HashMap<u64, (RecordPtr, u32)> = HashMap::new();
    let mut valid_records: HashMap<u64, u64> = HashMap::new();
    let mut put_txns: HashSet<u64> = HashSet::new();
    let mut take_targets: HashSet<RecordPtr> = HashSet::new();
    let mut take_txns: HashSet<u64> = HashSet::new();
    let mut seqs: Vec<Vec<u64>> = vec![Vec::new(); dirs.data_dirs.len()];
    let log = scan::scan(&*session.view(), &dirs.data_dirs, &mut |v| {
        if let Some(s) = seqs.get_mut(v.segment.dir) {
            s.push(v.header.seq);
        }
        let ptr = RecordPtr {
            segment: v.segment.id,
            offset: v.offset,
        };
        match (v.header.kind, v.payload) {
            (Kind::Commit, Payload::Count(n)) => {
                commits.insert(v.header.txn, (ptr, n));
            }
            (Kind::Put, _) => {
                put_txns.insert(v.header.txn);
                *valid_records.entry(v.header.txn).or_default() += 1;
            }
            (Kind::PutBatch, Payload::Batch(n)) => {
                put_txns.insert(v.header.txn);
                *valid_records.entry(v.header.txn).or_default() += u64::from(n);
            }
            (Kind::Take, Payload::Take(target)) => {
                take_targets.insert(target);
                take_txns.insert(v.header.txn);
                *valid_records.entry(v.header.txn).or_default() += 1;
            }
            _ => {}
        }
    })?;
    report.problems = first.problems;
    let strict_clean = session
        .replay(RecoveryMode::Strict)
        .is_ok_and(|r| r.report.checkpoint_fallbacks.is_empty());
    if log.problems.is_empty() && strict_clean && report.headers_rewritten == 0 {
        return Ok(report);
    }
    let rec = session.replay(RecoveryMode::Skip)?;

    // Where the replay above started applying commits, per segment's directory: damaged Puts
    // before it count as lost only if its queue held them.
    let used_checkpoint = rec.report.checkpoint_generation.and_then(|g| {
        let path = dirs.checkpoint_dir.join(file_name::checkpoint(g));
        replay::read_file(fs, &path)
            .ok()
            .and_then(|b| checkpoint::decode(&b).ok())
    });
    let used_tails: Vec<LogPosition> = used_checkpoint
        .as_ref()
        .map(|ck| ck.dirs.iter().map(|d| d.tail).collect())
        .unwrap_or_default();
    let seg_dir: HashMap<SegmentId, usize> = rec
        .dirs
        .iter()
        .enumerate()
        .flat_map(|(i, d)| d.segments.iter().map(move |s| (s.id, i)))
        .collect();
    let tail_of = |ptr: RecordPtr| -> LogPosition {
        let dir = seg_dir.get(&ptr.segment);
        used_tails
            .iter()
            .copied()
            .find(|t| seg_dir.get(&t.segment) == dir && dir.is_some())
            .unwrap_or(LogPosition::new(0, 0))
    };
    let in_region = |ptr: &RecordPtr| {
        log.regions.iter().any(|r: &Region| {
            r.segment.id == ptr.segment
                && ptr.record_offset() >= r.offset
                && ptr.record_offset() < r.end
        })
    };

    // The queue: what skip mode restores, minus events whose record is damaged.
    let segs: HashMap<SegmentId, Arc<Segment>> = rec
        .dirs
        .iter()
        .flat_map(|d| d.segments.iter().map(|s| (s.id, s.clone())))
        .collect();
    let mut queue = Vec::with_capacity(rec.state.queue.len());
    let mut queued_bytes = 0u64;
    let mut lost: HashSet<RecordPtr> = HashSet::new();
    for ptr in &rec.state.queue {
        // What the event counts against capacity_bytes, if its record is intact.
        let intact = if in_region(ptr) {
            None
        } else {
            segs.get(&ptr.segment).and_then(|s| {
                match replay::read_record(s, ptr.record_offset(), 0, replay::BodyCheck::Full) {
                    Ok((h, replay::Payload::Put)) if h.kind == Kind::Put && ptr.index() == 0 => {
                        Some(h.len)
                    }
                    Ok((h, replay::Payload::Batch(n))) if u32::from(ptr.index()) < n => {
                        Some(record::batch_share(h.len, n, ptr.index()))
                    }
                    _ => None,
                }
            })
        };
        if let Some(len) = intact {
            queued_bytes += u64::from(len);
            queue.push(*ptr);
        } else {
            lost.insert(*ptr);
        }
    }
    // Events the checkpoint queued whose record is damaged and that no later take took: skip
    // mode already left out those it could tell were damaged (e.g. every event of a PutBatch
    // whose payload fails its CRC, §3.5), so the queue above does not show them.
    if let Some(ck) = &used_checkpoint {
        for ptr in &ck.queue {
            if in_region(ptr) && !take_targets.contains(ptr) {
                lost.insert(*ptr);
            }
        }
    }
    // Damaged Puts after the checkpoint: lost when their transaction committed and no take
    // took them. Damaged records of unknown kind in committed transactions are counted apart.
    let mut damaged_per_txn: HashMap<u64, (u64, bool)> = HashMap::new();
    for r in &log.regions {
        if r.placement == Placement::Tail {
            continue;
        }
        for (off, h) in &r.headers {
            let ptr = RecordPtr {
                segment: r.segment.id,
                offset: *off,
            };
            let e = damaged_per_txn.entry(h.txn).or_default();
            e.0 += 1;
            if h.kind.holds_events() {
                e.1 = true;
                if commits.contains_key(&h.txn)
                    && !take_targets.contains(&ptr)
                    && ptr >= tail_of(ptr)
                {
                    lost.insert(ptr);
                }
            }
        }
    }
    for (txn, (commit_ptr, n)) in &commits {
        if *commit_ptr < tail_of(*commit_ptr) {
            continue;
        }
        let seen = valid_records.get(txn).copied().unwrap_or(0);
        let (damaged, is_put) = damaged_per_txn.get(txn).copied().unwrap_or((0, false));
        let missing = u64::from(*n).saturating_sub(seen + damaged);
        // A transaction with no valid Take record may have been a put whose records are all
        // damaged (their kind unknown): count them, an upper bound rather than a silent 0.
        if is_put || !take_txns.contains(txn) {
            report.events_lost += missing;
        }
    }
    // A Commit record whose header is intact but whose payload is damaged: its transaction
    // committed, but repair does not restore it; its intact Puts are not saved.
    for r in &log.regions {
        for (_, h) in &r.headers {
            if h.kind == Kind::Commit && !commits.contains_key(&h.txn) && put_txns.contains(&h.txn)
            {
                report.events_lost += valid_records.get(&h.txn).copied().unwrap_or(0);
            }
        }
    }
    report.events_lost += lost.len() as u64;
    for s in &mut seqs {
        s.sort_unstable();
    }
    for r in &log.regions {
        report.records_lost += match r.placement {
            Placement::Middle { next_seq } => {
                let gap = next_seq.saturating_sub(r.seq_before).saturating_sub(1);
                let elsewhere: usize = seqs
                    .iter()
                    .enumerate()
                    .filter(|(d, _)| *d != r.segment.dir)
                    .map(|(_, s)| {
                        s.partition_point(|x| *x < next_seq)
                            - s.partition_point(|x| *x <= r.seq_before)
                    })
                    .sum();
                let min_record = (record::HEADER_LEN + MARKER_PAYLOAD_LEN) as u64;
                let fits = r.end.saturating_sub(r.offset) / min_record;
                gap.saturating_sub(elsewhere as u64).min(fits)
            }
            Placement::SegmentEnd => r.headers.len().max(1) as u64,
            Placement::Tail => 0,
        };
    }
    report.uncommitted_transactions = rec.report.uncommitted_transactions_discarded;
    report.events_restored = queue.len() as u64;

    // 4. Quarantine every damaged range and torn tail.
    for r in &log.regions {
        if r.end > r.offset {
            let reason = if r.placement == Placement::Tail {
                Reason::TornTail
            } else {
                Reason::DamagedRecords
            };
            quarantine_range(fs, &r.segment, r.offset, r.end, reason, &mut report)?;
        }
    }

    // 5. The new checkpoint.
    let mut ck_dirs = Vec::new();
    for (i, d) in rec.dirs.iter().enumerate() {
        if let Some(last) = d.segments.last() {
            let tail = LogPosition {
                segment: last.id,
                offset: rec.tails[i],
            };
            ck_dirs.push(DirCheckpoint {
                tail,
                scan_start: tail,
            });
        }
    }
    let generation = rec.next_generation;
    let ck = Checkpoint {
        generation,
        created_ms: now_ms(),
        last_seq: rec.last_seq,
        next_txn: rec.next_txn,
        queued_bytes,
        inflight: 0,
        dirs: ck_dirs,
        committing: Vec::new(),
        commit_pins: rec.state.commit_pin_list(),
        queue: queue.clone(),
    };
    write_durably(
        fs,
        &dirs.checkpoint_dir,
        &file_name::checkpoint(generation),
        &checkpoint::encode(&ck),
    )?;
    report.checkpoint_written = Some(generation);
    drop(rec);

    // 6. Older checkpoints name damaged records: remove them.
    let names = fs
        .list_dir(&dirs.checkpoint_dir)
        .map_err(io_err("listing checkpoint dir", &dirs.checkpoint_dir))?;
    for g in names.iter().filter_map(|n| file_name::parse_checkpoint(n)) {
        if g < generation {
            let path = dirs.checkpoint_dir.join(file_name::checkpoint(g));
            fs.remove_file(&path)
                .map_err(io_err("removing old checkpoint", &path))?;
        }
    }
    fs.sync_dir(&dirs.checkpoint_dir)
        .map_err(io_err("syncing checkpoint dir", &dirs.checkpoint_dir))?;

    // 7. Patch the log.
    let mut touched: HashMap<SegmentId, Segment> = HashMap::new();
    for r in &log.regions {
        let len = r.end.saturating_sub(r.offset);
        if len == 0 {
            continue;
        }
        let bytes = match r.placement {
            Placement::Middle { next_seq } => {
                // (Above a recycled segment's floor too.)
                let seq = r.segment.seq_floor(r.seq_before) + 1;
                match filler(len, seq).filter(|_| seq < next_seq) {
                    Some(b) => b,
                    None => {
                        tracing::warn!(segment = %r.segment.path.display(), offset = r.offset, len, "damaged range left in place (no inert record fits); the checkpoint skips it");
                        continue;
                    }
                }
            }
            // A recycled segment's log ends at its end marker; the bytes after it are never read
            // (the quarantine file keeps them).
            Placement::SegmentEnd | Placement::Tail => match &r.segment.recycled {
                Some(rec) => rec.end.to_vec(),
                None => vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)],
            },
        };
        let seg = match touched.entry(r.segment.id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(open_real(fs, &r.segment)?),
        };
        // One range at a time, each synced before the next is written: a crash tears at
        // most the range being written.
        seg.file
            .write_all_at(&bytes, r.offset)
            .map_err(io_err("patching damaged range", &r.segment.path))?;
        seg.file
            .sync_data()
            .map_err(io_err("syncing segment", &seg.path))?;
    }

    // 8. Check: strict mode opens with exactly that queue.
    let after = session.replay(RecoveryMode::Strict)?;
    if after.state.queue.iter().copied().ne(queue.iter().copied()) {
        return Err(Error::io(
            "checking the repaired channel",
            &dirs.checkpoint_dir,
            std::io::Error::other(format!(
                "after repair a strict open restores {} events, {} were expected",
                after.state.len(),
                queue.len()
            )),
        ));
    }
    Ok(report)
}
