//! Segment files: creation (preallocated, header synced before use), reuse of a collected
//! segment's file (recycling), opening, and the table of mapped segments that takes read events
//! from.

use rustc_hash::FxHashMap as HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::format::record::{self, HEADER_LEN, Kind, RecordHeader};
use crate::format::{DecodeError, file_name, segment_header};
use crate::ids::SegmentId;
use crate::io::{FileSystem, MappedRegion, StorageFile};

/// An open segment: its file (for appends and repairs) and a read-only map (for reads).
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) id: SegmentId,
    pub(crate) dir: usize,
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn StorageFile>,
    pub(crate) map: Arc<dyn MappedRegion>,
    /// Set for a recycled (version 3) segment: its records end at its end marker, not at zeros.
    pub(crate) recycled: Option<Recycled>,
}

/// What replay and appends need to know of a recycled segment (DESIGN.md §4.6).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recycled {
    /// Every record of this use of the file has a sequence number above this.
    pub(crate) floor: u64,
    /// The header that ends its records ([`record::end_marker`]).
    pub(crate) end: [u8; HEADER_LEN],
}

impl Recycled {
    fn new(id: SegmentId, floor: u64) -> Self {
        Recycled {
            floor,
            end: record::end_marker(id.0, floor),
        }
    }
}

static ZEROS: [u8; 1 << 20] = [0u8; 1 << 20];

/// Bytes per `pread` when replay reads a segment sequentially (its records, or the zeros after
/// them). Reading the replay bench's 552 MB of segments from the page cache took about 30 ms of
/// CPU in 1 MiB reads (as fast as 2-8 MiB) against 38 ms in 512 KiB and 45 ms in 256 KiB reads
/// (page-aligned, this machine, 24 Nov 2026).
pub(crate) const SCAN_CHUNK: usize = 1 << 20;

/// Alignment of the buffers replay reads segments into.
pub(crate) const PAGE: usize = 4096;

/// A zeroed buffer of `size` bytes that starts at a page boundary: `buf[base..base + size]`.
/// A `pread` from a page-aligned file offset into it copies with source and destination aligned
/// alike, which `rep movsb` needs to run at full speed.
pub(crate) fn aligned_buffer(size: usize) -> (Vec<u8>, usize) {
    let buf = vec![0u8; size + PAGE];
    let base = (PAGE - buf.as_ptr() as usize % PAGE) % PAGE;
    (buf, base)
}

/// The index of the last non-zero byte of `bytes`.
fn last_nonzero_in(bytes: &[u8]) -> Option<usize> {
    // OR-folding 4 KiB blocks vectorises; only a block with a set bit is searched.
    let block = bytes
        .chunks(4096)
        .rposition(|c| c.iter().fold(0u8, |a, b| a | b) != 0)?;
    let start = block * 4096;
    let end = (start + 4096).min(bytes.len());
    bytes[start..end]
        .iter()
        .rposition(|b| *b != 0)
        .map(|i| start + i)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Creates segment `id` in `dir_path`, preallocated to `size` bytes of zeros after its header.
///
/// Protocol (DESIGN.md, "Segment creation"): write `segment-N.log.tmp` (header, then zeros to
/// the full size), `fsync` it, rename it to `segment-N.log`, `fsync` the directory. A crash at
/// any step leaves either no segment or a complete one; leftover `.tmp` files are removed at
/// open. Writing zeros (not `fallocate`) makes later `fdatasync`s cheap: the blocks are
/// allocated and written, so a commit's sync carries no metadata.
pub(crate) fn create(
    fs: &dyn FileSystem,
    dir: usize,
    dir_path: &Path,
    id: SegmentId,
    size: u64,
    version: u16,
) -> Result<Segment> {
    let tmp = dir_path.join(file_name::segment_tmp(id.0));
    let path = dir_path.join(file_name::segment(id.0));
    let result = (|| -> io::Result<Arc<dyn StorageFile>> {
        let file = fs.create_new(&tmp)?;
        let header =
            segment_header::encode(&segment_header::SegmentHeader::new(id.0, now_ms(), version));
        file.write_all_at(&header, 0)?;
        let mut off = header.len() as u64;
        while off < size {
            let n = (size - off).min(ZEROS.len() as u64) as usize;
            file.write_all_at(&ZEROS[..n], off)?;
            off += n as u64;
        }
        file.sync_all()?;
        publish(fs, dir_path, &tmp, &path, file)
    })();
    let file = match result {
        Ok(f) => f,
        Err(e) => {
            let _ = fs.remove_file(&tmp);
            return Err(Error::io("creating segment", &path, e));
        }
    };
    mapped(id, dir, path, file, None)
}

/// The last steps of [`create`] and [`recycle`]: rename the ready `tmp` to `path` and `fsync`
/// the directory.
fn publish(
    fs: &dyn FileSystem,
    dir_path: &Path,
    tmp: &Path,
    path: &Path,
    file: Arc<dyn StorageFile>,
) -> io::Result<Arc<dyn StorageFile>> {
    fs.rename(tmp, path)?;
    fs.sync_dir(dir_path)?;
    Ok(file)
}

/// A [`Segment`] of the open `file` at `path`, with its read-only map.
fn mapped(
    id: SegmentId,
    dir: usize,
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    recycled: Option<Recycled>,
) -> Result<Segment> {
    let map = file
        .map_read()
        .map_err(|e| Error::io("mapping segment", &path, e))?;
    Ok(Segment {
        id,
        dir,
        path,
        file,
        map,
        recycled,
    })
}

/// Reuses the collected segment file `free` (a `segment-N.log.free` in `dir_path`) as segment
/// `id` of `size` bytes, without zeroing it: its records will all have sequence numbers above
/// `floor`, which must be at least every sequence number handed out so far.
///
/// Protocol (DESIGN.md §4.6): rename `free` to `segment-{id}.log.tmp`; write a version 3
/// header (with `floor`) and the segment's end marker right after it; `fdatasync`; rename it to
/// `segment-{id}.log`; `fsync` the directory. A crash at any step leaves the free file, a
/// `.tmp` that open removes, or a complete recycled segment. Whatever the file held before is
/// never read again: every record of an earlier use has a sequence number at or below `floor`,
/// and the end marker names this segment. On an error the file is removed and the caller
/// creates a zero-filled segment instead.
pub(crate) fn recycle(
    fs: &dyn FileSystem,
    dir: usize,
    dir_path: &Path,
    free: &Path,
    id: SegmentId,
    size: u64,
    floor: u64,
) -> Result<Segment> {
    let tmp = dir_path.join(file_name::segment_tmp(id.0));
    let path = dir_path.join(file_name::segment(id.0));
    let recycled = Recycled::new(id, floor);
    let result = (|| -> io::Result<Arc<dyn StorageFile>> {
        fs.rename(free, &tmp)?;
        let file = fs.open(&tmp, true)?;
        let len = file.len()?;
        if len != size {
            return Err(io::Error::other(format!(
                "{} is {len} bytes, not the segment size {size}",
                free.display()
            )));
        }
        let header = segment_header::encode(&segment_header::SegmentHeader::recycled(
            id.0,
            now_ms(),
            floor,
        ));
        file.write_all_at(&header, 0)?;
        file.write_all_at(&recycled.end, header.len() as u64)?;
        file.sync_data()?;
        publish(fs, dir_path, &tmp, &path, file)
    })();
    let file = match result {
        Ok(f) => f,
        Err(e) => {
            let _ = fs.remove_file(&tmp);
            let _ = fs.remove_file(free);
            return Err(Error::io("recycling segment", free, e));
        }
    };
    mapped(id, dir, path, file, Some(recycled))
}

/// Bytes of a kept file's stamp: a version 3 header and its end marker.
const STAMP_LEN: usize = segment_header::LEN + HEADER_LEN;

/// Stamps the collected segment file `path` (once segment `id`, now `segment-{id}.log.free`)
/// with `floor`, a sequence number at or above every record it holds: a version 3 header whose
/// floor is `floor`, and the stamp's mark ([`record::free_stamp_marker`], kind 7: a recycled
/// segment's own header and end marker are not a stamp), in one write, then `fdatasync`. An open
/// keeps a file for reuse only with an intact stamp ([`read_stamp`]) and starts the sequence
/// counter above its floor, so the file's records stay below the floor of its next use whatever
/// replay finds elsewhere (a full replay after both checkpoints are lost may find none).
pub(crate) fn stamp_free(
    fs: &dyn FileSystem,
    path: &Path,
    id: SegmentId,
    floor: u64,
) -> io::Result<()> {
    let file = fs.open(path, true)?;
    let mut stamp = segment_header::encode(&segment_header::SegmentHeader::recycled(
        id.0,
        now_ms(),
        floor,
    ));
    stamp.extend_from_slice(&record::free_stamp_marker(id.0, floor));
    file.write_all_at(&stamp, 0)?;
    file.sync_data()
}

/// The floor a kept file `path` (named for segment `id`) was stamped with, if its stamp is
/// intact ([`stamp_free`]); `None` for a file renamed but not (fully) stamped before a crash.
pub(crate) fn read_stamp(fs: &dyn FileSystem, path: &Path, id: u32) -> Option<u64> {
    let file = fs.open(path, false).ok()?;
    let mut stamp = [0u8; STAMP_LEN];
    file.read_exact_at(&mut stamp, 0).ok()?;
    let h = segment_header::decode(&stamp[..segment_header::LEN]).ok()?;
    (h.is_recycled()
        && h.segment_id == id
        && stamp[segment_header::LEN..] == record::free_stamp_marker(id, h.floor))
    .then_some(h.floor)
}

/// Opens an existing segment for reading and appending.
pub(crate) fn open(
    fs: &dyn FileSystem,
    dir: usize,
    path: PathBuf,
    id: SegmentId,
) -> Result<Segment> {
    let file = fs
        .open(&path, true)
        .map_err(|e| Error::io("opening segment", &path, e))?;
    let map = file
        .map_read()
        .map_err(|e| Error::io("mapping segment", &path, e))?;
    // A recycled segment is known by its header; one that does not decode is the caller's to
    // report (it is then read as a zero-filled one, or skipped).
    let mut header = [0u8; segment_header::LEN];
    let recycled = map
        .read_into(0, &mut header)
        .ok()
        .and_then(|()| segment_header::decode(&header).ok())
        .filter(|h| h.is_recycled())
        .map(|h| Recycled::new(id, h.floor));
    Ok(Segment {
        id,
        dir,
        path,
        file,
        map,
        recycled,
    })
}

impl Segment {
    /// The lowest sequence number a record of this segment may have, given that the log before
    /// it reached `after_seq`: above the floor of a recycled segment.
    #[inline]
    pub(crate) fn seq_floor(&self, after_seq: u64) -> u64 {
        match &self.recycled {
            Some(r) => after_seq.max(r.floor),
            None => after_seq,
        }
    }

    /// True when the header bytes `hb` at a record boundary end this segment's records: its
    /// end marker in a recycled segment, a zero header in a zero-filled one (whose caller also
    /// checks what follows; see `replay::at_log_end`).
    #[inline]
    pub(crate) fn is_end(&self, hb: &[u8]) -> bool {
        match &self.recycled {
            Some(r) => hb == r.end,
            None => record::is_end_marker(hb),
        }
    }

    /// Reads and decodes the record header at `offset` and checks that the whole record lies
    /// inside the segment, after the segment header (and, in a recycled segment, that its
    /// sequence number is above the floor). The header CRC is checked; the payload CRC
    /// is not (that needs the payload: [`record::verify`]).
    pub(crate) fn record_header(
        &self,
        offset: u64,
    ) -> std::result::Result<RecordHeader, DecodeError> {
        let len = self.map.len();
        if offset < segment_header::LEN as u64 {
            return Err(DecodeError::Invalid {
                field: "record offset",
                value: offset,
            });
        }
        let mut hb = [0u8; HEADER_LEN];
        self.map
            .read_into(offset, &mut hb)
            .map_err(|_| DecodeError::Truncated {
                needed: offset.saturating_add(HEADER_LEN as u64),
                available: len,
            })?;
        let h = record::decode_header(&hb)?;
        if let Some(r) = &self.recycled
            && h.seq <= r.floor
        {
            return Err(DecodeError::Invalid {
                field: "sequence number (at or below the recycled segment's floor: a record of \
                        the file's earlier use)",
                value: h.seq,
            });
        }
        let end = offset.saturating_add(h.record_len());
        if end > len {
            return Err(DecodeError::Truncated {
                needed: end,
                available: len,
            });
        }
        Ok(h)
    }

    /// The offset just past the last non-zero byte at or after `from` (`from` when there is
    /// none): where a torn tail or leftover bytes end.
    ///
    /// Reads backwards from the end of the segment in [`SCAN_CHUNK`] `pread`s (a copy from the
    /// page cache into a buffer that stays in the CPU's cache costs less than faulting in every
    /// page of a map) and stops at the first chunk, from the end, holding a non-zero byte. With
    /// nothing there it reads the whole rest of the segment: up to a segment's size of zeros.
    pub(crate) fn last_nonzero(&self, from: u64) -> u64 {
        let len = self.map.len();
        if from >= len {
            return from;
        }
        let size = (len - from).min(SCAN_CHUNK as u64) as usize;
        let (mut buf, base) = aligned_buffer(size);
        let mut end = len;
        while end > from {
            let n = (end - from).min(size as u64) as usize;
            let start = end - n as u64;
            let chunk = &mut buf[base..base + n];
            let found = match self.file.read_exact_at(chunk, start) {
                Ok(()) => last_nonzero_in(chunk),
                // The map shows the same bytes; a read error there ends the process (UNSAFE.md).
                Err(_) => {
                    let mut found = None;
                    let _ = self
                        .map
                        .visit(start, n, &mut |bytes| found = last_nonzero_in(bytes));
                    found
                }
            };
            if let Some(i) = found {
                return start + i as u64 + 1;
            }
            end = start;
        }
        from
    }

    /// The format version in the segment's header (0 when it cannot be read; the header was
    /// checked when the segment was opened).
    pub(crate) fn version(&self) -> u16 {
        let mut v = [0u8; 2];
        match self.map.read_into(8, &mut v) {
            Ok(()) => u16::from_le_bytes(v),
            Err(_) => 0,
        }
    }

    /// The header of the record holding the event `ptr` points at: a Put (index 0) or a
    /// PutBatch (any index; the caller checks it against the count).
    pub(crate) fn event_header(
        &self,
        ptr: crate::ids::RecordPtr,
    ) -> std::result::Result<RecordHeader, DecodeError> {
        let h = self.record_header(ptr.record_offset())?;
        match h.kind {
            Kind::PutBatch => Ok(h),
            Kind::Put if ptr.index() == 0 => Ok(h),
            Kind::Put => Err(DecodeError::Invalid {
                field: "event index (a Put record holds one event)",
                value: u64::from(ptr.index()),
            }),
            other => Err(DecodeError::Invalid {
                field: "record kind (expected Put or PutBatch)",
                value: other as u64,
            }),
        }
    }
}

/// The segments takes can read from, by id.
#[derive(Debug, Default)]
pub(crate) struct SegmentTable {
    segments: RwLock<HashMap<SegmentId, Arc<Segment>>>,
}

impl SegmentTable {
    pub(crate) fn insert(&self, seg: Arc<Segment>) {
        self.segments.write().insert(seg.id, seg);
    }
    pub(crate) fn get(&self, id: SegmentId) -> Option<Arc<Segment>> {
        self.segments.read().get(&id).cloned()
    }
    pub(crate) fn remove(&self, id: SegmentId) -> Option<Arc<Segment>> {
        self.segments.write().remove(&id)
    }
    pub(crate) fn ids_in_dir(&self, dir: usize) -> Vec<SegmentId> {
        let mut ids: Vec<_> = self
            .segments
            .read()
            .values()
            .filter(|s| s.dir == dir)
            .map(|s| s.id)
            .collect();
        ids.sort();
        ids
    }
    pub(crate) fn len(&self) -> usize {
        self.segments.read().len()
    }
}
