//! Segment files: creation (preallocated, header synced before use), opening, and the table of
//! mapped segments that takes read events from.

use std::collections::HashMap;
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
        let header = segment_header::encode_version(
            &segment_header::SegmentHeader {
                segment_id: id.0,
                created_ms: now_ms(),
            },
            version,
        );
        file.write_all_at(&header, 0)?;
        let mut off = header.len() as u64;
        while off < size {
            let n = (size - off).min(ZEROS.len() as u64) as usize;
            file.write_all_at(&ZEROS[..n], off)?;
            off += n as u64;
        }
        file.sync_all()?;
        fs.rename(&tmp, &path)?;
        fs.sync_dir(dir_path)?;
        Ok(file)
    })();
    let file = match result {
        Ok(f) => f,
        Err(e) => {
            let _ = fs.remove_file(&tmp);
            return Err(Error::io("creating segment", &path, e));
        }
    };
    let map = file
        .map_read()
        .map_err(|e| Error::io("mapping segment", &path, e))?;
    Ok(Segment {
        id,
        dir,
        path,
        file,
        map,
    })
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
    Ok(Segment {
        id,
        dir,
        path,
        file,
        map,
    })
}

impl Segment {
    /// Reads and decodes the record header at `offset` and checks that the whole record lies
    /// inside the segment, after the segment header. The header CRC is checked; the payload CRC
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
