//! The log of one data directory: appends at the tail of the active segment, rolls to a
//! preallocated spare when it is full, and syncs through group commit.
//!
//! # Append protocol
//! Under the append lock: give each record of the batch the next sequence numbers and seal it
//! (header CRC; an encrypted Put is encrypted here, since its nonce holds its sequence number),
//! roll first if the batch does not fit, `pwrite` it at the tail, advance the tail, and run the
//! caller's hook (which registers a committing transaction with the queue state, so a
//! checkpoint snapshot, which takes every append lock, sees the commit either applied or listed).
//! Appends go through `pwrite` into preallocated segments; DESIGN.md ("Append path") records the
//! measurement behind that choice.
//!
//! In a recycled segment (DESIGN.md §4.6) the same `pwrite` also writes the segment's end marker
//! right after the records, when it fits: the bytes after them are the file's earlier contents,
//! not zeros.
//!
//! # Roll protocol
//! `fdatasync` the full segment (so only the newest non-empty segment of a directory can ever
//! hold a torn tail), then switch to the spare that a background thread prepared (or create
//! one now) and register it for reads. The next spare is started once the new segment is half
//! full: a collected segment's file from the directory's pool of free files when there is one
//! (recycled: a new header and end marker, nothing zeroed), else a new zero-filled file.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::Mutex;

use crate::at_rest::PayloadCodec;
use crate::error::{Error, Result};
use crate::format::record::{self, Unsealed};
use crate::format::segment_header;
use crate::group_commit::GroupCommit;
use crate::ids::{LogPosition, RecordPtr, SegmentId};
use crate::io::FileSystem;
use crate::poison::Poison;
use crate::segment::{self, Segment, SegmentTable};

/// What one append wrote.
#[derive(Debug, Default)]
pub(crate) struct Appended {
    /// Where each record of the batch starts, in batch order.
    pub(crate) ptrs: Vec<RecordPtr>,
    /// The log's logical length after the append: pass it to [`DirLog::sync_to`].
    pub(crate) end: u64,
}

/// Shared counters for every directory of a channel.
#[derive(Debug)]
pub(crate) struct LogShared {
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) poison: Arc<Poison>,
    pub(crate) segments: Arc<SegmentTable>,
    /// The last sequence number handed out (global, so commits order across directories).
    pub(crate) seq: AtomicU64,
    /// The next segment id (global, ids are unique across directories).
    pub(crate) next_segment: AtomicU32,
    pub(crate) segment_size: u64,
    /// How many collected segment files each directory keeps for reuse (`recycle_segments`).
    pub(crate) recycle_segments: usize,
    /// Encrypts Put payloads as they are sealed (their nonce includes the sequence number).
    pub(crate) codec: Arc<PayloadCodec>,
}

impl LogShared {
    /// Segment `id` of `dir` (at `dir_path`): the collected file `free` reused with `floor` when
    /// given ([`segment::recycle`]), else, or when that fails, a new zero-filled one (`floor`
    /// is then unused). The one way a log gets a segment: its spares, a roll that finds no
    /// spare, and an open's first segment.
    pub(crate) fn new_segment(
        &self,
        dir: usize,
        dir_path: &std::path::Path,
        id: SegmentId,
        free: Option<&std::path::Path>,
        floor: u64,
    ) -> Result<Segment> {
        if let Some(free) = free {
            match segment::recycle(&*self.fs, dir, dir_path, free, id, self.segment_size, floor) {
                Ok(seg) => return Ok(seg),
                Err(e) => tracing::warn!(
                    error = %e,
                    "reusing a collected segment file failed; creating a new segment"
                ),
            }
        }
        segment::create(
            &*self.fs,
            dir,
            dir_path,
            id,
            self.segment_size,
            self.segment_version(),
        )
    }

    /// The version new segments get: 2 when this channel may write PutBatch records into them.
    pub(crate) fn segment_version(&self) -> u16 {
        if self.codec.batches() {
            crate::format::BATCH_FORMAT_VERSION
        } else {
            crate::format::FORMAT_VERSION
        }
    }
}

struct Writer {
    active: Arc<Segment>,
    /// Byte offset of the end of the written records in the active segment.
    tail: u64,
    /// Logical bytes appended to this directory's log since open.
    appended: u64,
    spare: Option<JoinHandle<Result<Segment>>>,
}

/// One data directory's log.
pub(crate) struct DirLog {
    pub(crate) index: usize,
    pub(crate) path: PathBuf,
    shared: Arc<LogShared>,
    writer: Mutex<Writer>,
    /// Collected segment files (`segment-N.log.free`) waiting to be reused, at most
    /// `recycle_segments`. Taken under the append lock when a spare is started.
    free: Mutex<Vec<PathBuf>>,
    pub(crate) sync: GroupCommit,
}

impl std::fmt::Debug for DirLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirLog")
            .field("index", &self.index)
            .field("path", &self.path)
            .finish()
    }
}

/// A snapshot of where a directory's log ends, taken under its append lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tail {
    pub(crate) position: LogPosition,
    pub(crate) appended: u64,
}

/// Held append locks of every directory (for a checkpoint snapshot).
pub(crate) struct TailsGuard<'a> {
    _guards: Vec<parking_lot::MutexGuard<'a, Writer>>,
    pub(crate) tails: Vec<Tail>,
}

impl DirLog {
    /// A log whose active segment is `active`, with records written up to `tail`, and whose
    /// directory holds the collected segment files `free` for reuse.
    pub(crate) fn new(
        index: usize,
        path: PathBuf,
        shared: Arc<LogShared>,
        active: Arc<Segment>,
        tail: u64,
        free: Vec<PathBuf>,
    ) -> Self {
        DirLog {
            index,
            path,
            shared,
            writer: Mutex::new(Writer {
                active,
                tail,
                appended: 0,
                spare: None,
            }),
            free: Mutex::new(free),
            sync: GroupCommit::default(),
        }
    }

    /// Starts preparing the next segment: reusing `free` when given, else (or when that fails)
    /// creating a zero-filled one. Called under the append lock.
    fn spawn_spare(
        shared: &Arc<LogShared>,
        index: usize,
        path: &std::path::Path,
        free: Option<PathBuf>,
    ) -> JoinHandle<Result<Segment>> {
        // The floor of a recycled spare is read here, under the append lock: every sequence
        // number handed out so far, those of whatever the free file held included (it was
        // collected before), is at or below it, and every record this segment will hold gets
        // its sequence number in a later append, above it. (Read on the thread instead, it
        // could pass the numbers an append took before it waited for the spare at a roll.)
        let floor = shared.seq.load(Ordering::SeqCst);
        let shared = shared.clone();
        let path = path.to_path_buf();
        let id = SegmentId(shared.next_segment.fetch_add(1, Ordering::SeqCst));
        std::thread::Builder::new()
            .name("tidegate-prealloc".into())
            .spawn(move || shared.new_segment(index, &path, id, free.as_deref(), floor))
            .unwrap_or_else(|e| {
                // Could not start a thread: create the spare when it is needed instead.
                let err = Error::io("starting preallocation thread", PathBuf::new(), e);
                std::thread::spawn(move || Err(err))
            })
    }

    /// Appends `records` (encoded in `buf`, unsealed) and runs `hook` before releasing the
    /// append lock. The records are durable once [`DirLog::sync_to`]`(appended.end)` returns.
    pub(crate) fn append(
        &self,
        buf: &mut Vec<u8>,
        records: &[Unsealed],
        hook: impl FnOnce(&Appended),
    ) -> Result<Appended> {
        let mut w = self.writer.lock();
        self.shared.poison.check()?;
        // One range of sequence numbers for the whole batch (taken under the append lock, so
        // they increase along this directory's log).
        let n = records.len() as u64;
        let first = self.shared.seq.fetch_add(n, Ordering::SeqCst) + 1;
        if first.saturating_add(n).saturating_sub(1) > crate::format::MAX_COUNTER {
            // Replay would refuse such a record: never write one.
            let e = Error::Config {
                key: "sequence number",
                message: "exhausted: the channel must be drained and recreated".into(),
            };
            return Err(self.shared.poison.poison(&e));
        }
        // A batch that does not fit the room left but fits a fresh segment, or whose first
        // record does not fit, rolls before anything is sealed or written: if the roll fails (no
        // space for a new segment), the append fails cleanly, and the caller's records are as
        // it encoded them. (Sealing encrypts in place: a spill that failed after sealing left
        // records that the transaction's commit then encrypted a second time.)
        if let Some(r0) = records.first() {
            let room = w.active.map.len();
            let whole = (buf.len() - r0.start) as u64;
            let first_len = records.get(1).map_or(buf.len(), |r| r.start) - r0.start;
            let fits_fresh = segment_header::LEN as u64 + whole <= self.shared.segment_size;
            let first_fits = w.tail + first_len as u64 <= room;
            let needs = !first_fits || (w.tail + whole > room && fits_fresh);
            // An empty segment is rolled past only when it is an older, smaller one (in one of
            // the configured size every record fits: config validation).
            let roll_first =
                needs && (w.tail > segment_header::LEN as u64 || room < self.shared.segment_size);
            if roll_first {
                self.roll(&mut w)?;
            }
        }
        for (seq, r) in (first..).zip(records) {
            // Nothing is written yet: a failure here is an ordinary error.
            record::seal_with(buf, r, seq, &self.shared.codec)?;
        }
        let mut out = Appended {
            ptrs: Vec::with_capacity(records.len()),
            end: 0,
        };
        let mut i = 0;
        while i < records.len() {
            // The largest run of whole records starting at i that fits in the active segment.
            // The active file's own size: a segment created under an older `max_segment_size`
            // keeps its size.
            let room = w.active.map.len();
            let start = records[i].start;
            // Usually the whole rest fits: no need to look at each record.
            let mut j = if w.tail + (buf.len() - start) as u64 <= room {
                records.len()
            } else {
                i
            };
            while j < records.len() {
                let end = records.get(j + 1).map_or(buf.len(), |r| r.start);
                if w.tail + (end - start) as u64 > room {
                    break;
                }
                j += 1;
            }
            // (A batch that does not fit the room left but fits a fresh segment rolled before
            // sealing, above; so did one whose first record does not fit. A roll here comes
            // after part of the batch is written.)
            if j == i {
                if w.tail == segment_header::LEN as u64 && room >= self.shared.segment_size {
                    // Cannot happen: config validation makes one largest record fit a segment
                    // of the configured size. (A smaller, older segment is rolled past.)
                    let e = Error::Config {
                        key: "max_segment_size",
                        message: "a record does not fit in an empty segment".into(),
                    };
                    return Err(if i > 0 {
                        self.shared.poison.poison(&e)
                    } else {
                        e
                    });
                }
                if let Err(e) = self.roll(&mut w) {
                    if i > 0 {
                        // Part of the batch is in the log already: the log no longer says what
                        // the caller will believe, so stop (a reopen sorts it out).
                        return Err(self.shared.poison.poison(&e));
                    }
                    return Err(e);
                }
                continue;
            }
            let end = records.get(j).map_or(buf.len(), |r| r.start);
            let offset = w.tail;
            let written = Self::write_part(&w.active, buf, start, end, offset);
            if let Err(e) = written {
                return Err(self.shared.poison.poison(&Error::io(
                    "appending to segment",
                    &w.active.path,
                    e,
                )));
            }
            for r in &records[i..j] {
                out.ptrs.push(RecordPtr {
                    segment: w.active.id,
                    offset: offset + (r.start - start) as u64,
                });
            }
            w.tail += (end - start) as u64;
            w.appended += (end - start) as u64;
            i = j;
        }
        out.end = w.appended;
        hook(&out);
        // Prepare the next segment once this one is half full: idle channels never preallocate,
        // busy ones find a spare ready when they roll.
        if w.spare.is_none() && w.tail > w.active.map.len() / 2 {
            let free = self.free.lock().pop();
            w.spare = Some(Self::spawn_spare(
                &self.shared,
                self.index,
                &self.path,
                free,
            ));
        }
        Ok(out)
    }

    /// Writes `buf[start..end]` at `offset` of `seg`, and after it, in a recycled segment, the
    /// segment's end marker when it fits (in the same `pwrite` when `end` is the end of `buf`).
    fn write_part(
        seg: &Segment,
        buf: &mut Vec<u8>,
        start: usize,
        end: usize,
        offset: u64,
    ) -> std::io::Result<()> {
        let after = offset + (end - start) as u64;
        let marker = seg
            .recycled
            .as_ref()
            .filter(|_| after + record::HEADER_LEN as u64 <= seg.map.len())
            .map(|r| r.end);
        match marker {
            Some(m) if end == buf.len() => {
                buf.extend_from_slice(&m);
                let r = seg.file.write_all_at(&buf[start..], offset);
                buf.truncate(end);
                r
            }
            Some(m) => {
                seg.file.write_all_at(&buf[start..end], offset)?;
                seg.file.write_all_at(&m, after)
            }
            None => seg.file.write_all_at(&buf[start..end], offset),
        }
    }

    /// Takes the collected segment `seg` out of use: its file is kept for reuse when `keep`
    /// (free space is not low), the directory's pool has room and the file has the configured
    /// size, and deleted otherwise. Kept: renamed `segment-N.log.free`, the directory synced,
    /// then stamped with the sequence counter, which is above every record it holds
    /// ([`segment::stamp_free`]); a file whose stamp fails is deleted. The caller syncs the
    /// directory after a deletion. (Called by the checkpoint thread only; the syncs run without
    /// the pool's lock, which appends take.)
    pub(crate) fn retire(&self, seg: &Segment, keep: bool) -> std::io::Result<()> {
        let fs = &*self.shared.fs;
        let room = self.free.lock().len() < self.shared.recycle_segments;
        if !(keep && room && seg.map.len() == self.shared.segment_size) {
            return fs.remove_file(&seg.path);
        }
        let to = self
            .path
            .join(crate::format::file_name::segment_free(seg.id.0));
        fs.rename(&seg.path, &to)?;
        // The new name is made durable before the stamp touches the file: a crash must never
        // leave `segment-N.log` (the rename lost) with a half-written stamp as its header. If
        // this sync fails, the file is left unstamped and out of the pool: an open deletes it.
        fs.sync_dir(&self.path)?;
        let floor = self.shared.seq.load(Ordering::SeqCst);
        if let Err(e) = segment::stamp_free(fs, &to, seg.id, floor) {
            tracing::warn!(file = %to.display(), error = %e, "stamping a collected segment file for reuse failed; deleting it");
            return fs.remove_file(&to);
        }
        self.free.lock().push(to);
        Ok(())
    }

    /// Deletes every file of the directory's pool (free space ran low: they hold space that
    /// puts need) and syncs the directory. Returns how many were deleted.
    pub(crate) fn release_free(&self) -> usize {
        let fs = &*self.shared.fs;
        let files = std::mem::take(&mut *self.free.lock());
        let mut deleted = 0;
        for f in &files {
            match fs.remove_file(f) {
                Ok(()) => deleted += 1,
                Err(e) => {
                    tracing::warn!(file = %f.display(), error = %e, "could not delete a collected segment file")
                }
            }
        }
        if deleted > 0 {
            if let Err(e) = fs.sync_dir(&self.path) {
                tracing::warn!(dir = %self.path.display(), error = %e, "syncing data dir after deleting collected segment files failed");
            }
            tracing::info!(dir = %self.path.display(), deleted, "free space is low: collected segment files kept for reuse deleted");
        }
        deleted
    }

    fn roll(&self, w: &mut Writer) -> Result<()> {
        self.sync.sync_file(
            &*w.active.file,
            &w.active.path,
            w.appended,
            &self.shared.poison,
        )?;
        let spare = match w.spare.take().map(|h| h.join()) {
            Some(Ok(Ok(seg))) => Ok(seg),
            Some(Ok(Err(e))) => {
                tracing::warn!(error = %e, "preallocating a spare segment failed; trying again now");
                Err(e)
            }
            Some(Err(_)) | None => Err(Error::io(
                "preallocating segment",
                &self.path,
                std::io::Error::other("preallocation thread panicked"),
            )),
        };
        let seg = match spare {
            Ok(seg) => seg,
            Err(_) => {
                let id = SegmentId(self.shared.next_segment.fetch_add(1, Ordering::SeqCst));
                self.shared
                    .new_segment(self.index, &self.path, id, None, 0)?
            }
        };
        let seg = Arc::new(seg);
        self.shared.segments.insert(seg.clone());
        tracing::debug!(dir = %self.path.display(), segment = %seg.id, "rolled to a new segment");
        w.active = seg;
        w.tail = segment_header::LEN as u64;
        Ok(())
    }

    /// Returns once everything appended up to logical offset `target` is durable.
    pub(crate) fn sync_to(&self, target: u64) -> Result<()> {
        self.sync.sync_to(target, &self.shared.poison, || {
            let w = self.writer.lock();
            (w.appended, w.active.file.clone(), w.active.path.clone())
        })
    }

    /// Syncs everything appended so far.
    pub(crate) fn sync_all_appended(&self) -> Result<()> {
        let target = self.writer.lock().appended;
        self.sync_to(target)
    }

    /// The active segment's id.
    pub(crate) fn active_segment(&self) -> SegmentId {
        self.writer.lock().active.id
    }

    /// Locks every directory's append lock (in index order) and reports their tails.
    pub(crate) fn lock_tails(logs: &[DirLog]) -> TailsGuard<'_> {
        let guards: Vec<_> = logs.iter().map(|l| l.writer.lock()).collect();
        let tails = guards
            .iter()
            .map(|w| Tail {
                position: RecordPtr {
                    segment: w.active.id,
                    offset: w.tail,
                },
                appended: w.appended,
            })
            .collect();
        TailsGuard {
            _guards: guards,
            tails,
        }
    }

    /// Waits for the spare being prepared (at close), so no half-written `.tmp` is left behind.
    pub(crate) fn finish_spare(&self) {
        let spare = self.writer.lock().spare.take();
        if let Some(Ok(Ok(seg))) = spare.map(|h| h.join()) {
            self.shared.segments.insert(Arc::new(seg));
        }
    }
}

impl Drop for DirLog {
    /// Joins the preallocation thread: the directory lock is released right after the logs are
    /// dropped, and no thread of ours may still be writing into the directory by then.
    fn drop(&mut self) {
        if let Some(h) = self.writer.get_mut().spare.take() {
            let _ = h.join();
        }
    }
}
