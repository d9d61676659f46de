//! Replay's sequential reader: a segment read front to back in large page-aligned `pread`s,
//! with the next chunk read ahead on a helper thread.
//!
//! # Why a helper thread
//! A full replay touches every byte of the log. Copying it from the page cache in
//! [`SCAN_CHUNK`]-sized `pread`s costs about as much CPU as the raw sequential read it is
//! compared with (docs/benchmarks.md, "replay"), and checking the headers in the copied bytes
//! costs about as much again. The two do not depend on each other until the scan reaches the next
//! chunk, so [`ChunkReader`] asks a helper thread to copy the chunk after the one the scan is
//! reading while the scan checks headers, and the scan then swaps buffers instead of copying.
//! The helper only copies bytes: every check stays on the scanning thread, in the same code
//! whether a chunk came from the helper or from a `pread` of its own, so read-ahead can change
//! how fast replay runs but never what it finds.
//!
//! # Shape of the reads
//! A chunk read ahead starts [`OVERLAP`] bytes before the end of the current one, so a header
//! or a small record that straddles the boundary lies whole in the next chunk. Anything the chunk
//! read ahead does not hold (a jump past it, a large record across the boundary, a read error in
//! the helper) is read on the scanning thread as before; a read error there makes
//! [`ChunkReader::get`] return `None`, and the caller reads through the map. Read-ahead starts
//! with the second chunk a reader needs, and only when there is a chunk to ask for (a short scan
//! after a checkpoint, or a scan of segments of a chunk or less, never starts a thread), stays
//! within one segment, and pauses after a large record (`want` below a chunk: the scan
//! skips the payloads of large records instead of reading them).
//!
//! ```text
//!   segment:  |<------ chunk k ------>|
//!                              |<------ chunk k+1 (read ahead) ------>|
//!                              |OVERLAP|
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::ids::SegmentId;
use crate::io::StorageFile;
use crate::segment::{self, SCAN_CHUNK, Segment};

/// Reads start on a page boundary of the file, into a page-aligned buffer
/// ([`segment::aligned_buffer`]).
const PAGE: u64 = segment::PAGE as u64;

/// How far before the end of the current chunk the chunk read ahead starts. Headers (32 bytes)
/// and records up to this size that straddle the boundary are found whole in the next chunk;
/// the bytes read twice cost 1/64 of the copying.
pub(crate) const OVERLAP: u64 = 16 * 1024;

/// Bytes of one segment, read from `start` into a page-aligned buffer.
struct Chunk {
    /// `SCAN_CHUNK` bytes from `base` on.
    buf: Vec<u8>,
    /// Where the page-aligned part of `buf` starts.
    base: usize,
    /// The segment and offset the bytes at `base` were read from (`None`: nothing valid), and
    /// how many there are.
    seg: Option<SegmentId>,
    start: u64,
    filled: usize,
}

impl Chunk {
    fn new() -> Self {
        let (buf, base) = segment::aligned_buffer(SCAN_CHUNK);
        Chunk {
            buf,
            base,
            seg: None,
            start: 0,
            filled: 0,
        }
    }

    /// Where in `buf` the `n` bytes at `offset` of segment `seg` are, when this chunk holds all
    /// of them.
    #[inline]
    fn find(&self, seg: SegmentId, offset: u64, n: usize) -> Option<usize> {
        if self.seg != Some(seg) || offset < self.start {
            return None;
        }
        let at = offset - self.start;
        (at + n as u64 <= self.filled as u64).then_some(self.base + at as usize)
    }

    /// The `n` bytes at `offset` of segment `seg`, when this chunk holds all of them.
    #[inline]
    fn get(&self, seg: SegmentId, offset: u64, n: usize) -> Option<&[u8]> {
        let at = self.find(seg, offset, n)?;
        self.buf.get(at..at + n)
    }

    /// Reads `len` bytes of `file` at `start` (page-aligned, at most a chunk) into the buffer.
    /// On a read error the chunk holds nothing.
    fn read(&mut self, file: &dyn StorageFile, seg: SegmentId, start: u64, len: usize) -> bool {
        self.seg = None;
        let Some(dst) = self.buf.get_mut(self.base..self.base + len) else {
            return false;
        };
        if file.read_exact_at(dst, start).is_err() {
            return false;
        }
        (self.seg, self.start, self.filled) = (Some(seg), start, len);
        true
    }
}

/// A chunk for the helper thread to fill.
struct Request {
    chunk: Chunk,
    file: Arc<dyn StorageFile>,
    seg: SegmentId,
    start: u64,
    len: usize,
}

/// The helper thread that reads chunks ahead, one at a time, in the order asked.
struct Helper {
    requests: Option<mpsc::Sender<Request>>,
    done: mpsc::Receiver<Chunk>,
    thread: Option<JoinHandle<()>>,
}

impl Helper {
    fn start() -> Option<Helper> {
        let (requests, todo) = mpsc::channel::<Request>();
        let (finished, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tidegate-replay-read".into())
            .spawn(move || {
                for mut r in todo {
                    r.chunk.read(&*r.file, r.seg, r.start, r.len);
                    if finished.send(r.chunk).is_err() {
                        return;
                    }
                }
            })
            .ok()?;
        Some(Helper {
            requests: Some(requests),
            done,
            thread: Some(thread),
        })
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Closing the request channel ends the thread after the read it may be doing.
        self.requests = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Chunks the helper reads ahead of the one the scan is reading. More than one, so that the
/// helper always has the next one to read while the scan is busy, and its wake-ups (tens of
/// microseconds on a virtual machine) are never waited for.
pub(crate) const DEPTH: usize = 3;

/// Reads segments front to back for the scan, [`SCAN_CHUNK`] bytes at a time, the next
/// [`DEPTH`] chunks read ahead on a helper thread (module docs).
pub(crate) struct ChunkReader {
    /// The chunk the scan is reading.
    cur: Chunk,
    /// Free buffers (chunks the scan is done with), for the next reads ahead.
    spares: Vec<Chunk>,
    /// Started with the second chunk this reader needs; `None` before, or if it could not start.
    helper: Option<Helper>,
    /// The chunks asked of the helper (segment, start, length), oldest first; it answers in
    /// this order.
    ahead: VecDeque<(SegmentId, u64, usize)>,
    /// Chunks read so far (by either thread).
    chunks: u64,
    /// Chunks read on the scanning thread.
    reads_here: u64,
    /// Bytes read so far (by either thread, whether used or not).
    bytes: u64,
}

impl ChunkReader {
    pub(crate) fn new() -> Self {
        ChunkReader {
            cur: Chunk {
                buf: Vec::new(),
                base: 0,
                seg: None,
                start: 0,
                filled: 0,
            },
            spares: Vec::new(),
            helper: None,
            ahead: VecDeque::new(),
            chunks: 0,
            reads_here: 0,
            bytes: 0,
        }
    }

    /// The `n` bytes at `offset` of `seg` (the caller checked that they lie inside it). When the
    /// current chunk does not hold them, takes the first chunk read ahead that does, and
    /// otherwise reads about `max(n, want)` bytes (at most a chunk, at most to the segment's
    /// end) from the page holding `offset` on. `None` when `n` is larger than a chunk or the
    /// read fails: the caller then reads through the map. `want` below [`SCAN_CHUNK`] (after a
    /// large record) also pauses read-ahead.
    #[inline]
    pub(crate) fn get(
        &mut self,
        seg: &Segment,
        offset: u64,
        n: usize,
        want: usize,
    ) -> Option<&[u8]> {
        if let Some(at) = self.cur.find(seg.id, offset, n) {
            return self.cur.buf.get(at..at + n);
        }
        self.refill(seg, offset, n, want)
    }

    #[cold]
    #[inline(never)]
    fn refill(&mut self, seg: &Segment, offset: u64, n: usize, want: usize) -> Option<&[u8]> {
        if n > SCAN_CHUNK {
            return None;
        }
        if let Some(&(s, start, len)) = self.ahead.front() {
            let end = offset.saturating_add(n as u64);
            if s == seg.id && offset < start && end > start && end <= start + len as u64 {
                // A record larger than OVERLAP across the end of the current chunk: the chunk
                // read ahead holds what follows it but not its start. Read just the record here,
                // into the current chunk's buffer (the scan is past the rest of it), and keep the
                // chunks read ahead for what follows.
                return self.read_here(seg, offset, n, n);
            }
        }
        while let Some(next) = self.collect_ahead() {
            if next.find(seg.id, offset, n).is_some() {
                let old = std::mem::replace(&mut self.cur, next);
                self.spares.push(old);
                self.read_ahead(seg, want);
                return self.cur.get(seg.id, offset, n);
            }
            self.spares.push(next);
        }
        self.read_here(seg, offset, n, want)?;
        self.read_ahead(seg, want);
        self.cur.get(seg.id, offset, n)
    }

    /// Reads about `max(n, want)` bytes (at most a chunk, at most to the segment's end) from the
    /// page holding `offset` on into the current chunk, on this thread; returns the `n` at
    /// `offset`.
    fn read_here(&mut self, seg: &Segment, offset: u64, n: usize, want: usize) -> Option<&[u8]> {
        if self.cur.buf.is_empty() {
            self.cur = self.spares.pop().unwrap_or_else(Chunk::new);
        }
        let mut from = offset & !(PAGE - 1);
        if offset - from + n as u64 > SCAN_CHUNK as u64 {
            from = offset;
        }
        let rest = seg.map.len().saturating_sub(from);
        let k = (want.max(n) as u64 + (offset - from))
            .min(SCAN_CHUNK as u64)
            .min(rest) as usize;
        if !self.cur.read(&*seg.file, seg.id, from, k) {
            return None;
        }
        self.chunks += 1;
        self.reads_here += 1;
        self.bytes += k as u64;
        self.cur.get(seg.id, offset, n)
    }

    /// Waits for the oldest chunk asked of the helper, if any.
    fn collect_ahead(&mut self) -> Option<Chunk> {
        self.ahead.pop_front()?;
        let chunk = self.helper.as_ref()?.done.recv().ok();
        if chunk.is_none() {
            // The helper is gone (it cannot fail, but if it did): read on this thread.
            self.helper = None;
            self.ahead.clear();
        }
        chunk
    }

    /// Asks the helper for the chunks after the current one (each starting [`OVERLAP`] bytes
    /// before the end of the one before it) until [`DEPTH`] are asked, while the scan reads
    /// small records and the segment goes on.
    fn read_ahead(&mut self, seg: &Segment, want: usize) {
        if want < SCAN_CHUNK {
            return;
        }
        let seg_len = seg.map.len();
        while self.ahead.len() < DEPTH {
            let (last_seg, last_start, last_len) = match self.ahead.back() {
                Some(&last) => last,
                None => match self.cur.seg {
                    Some(id) => (id, self.cur.start, self.cur.filled),
                    None => return,
                },
            };
            let end = last_start + last_len as u64;
            if last_seg != seg.id || last_len < SCAN_CHUNK || end >= seg_len {
                return;
            }
            let start = (end - OVERLAP) & !(PAGE - 1);
            let len = (seg_len - start).min(SCAN_CHUNK as u64) as usize;
            // Started only when there is a chunk to ask for: a scan of small segments (a chunk
            // each) never starts one.
            if self.helper.is_none() {
                if self.chunks < 2 {
                    return;
                }
                self.helper = Helper::start();
            }
            let Some(requests) = self.helper.as_ref().and_then(|h| h.requests.as_ref()) else {
                return;
            };
            let request = Request {
                chunk: self.spares.pop().unwrap_or_else(Chunk::new),
                file: seg.file.clone(),
                seg: seg.id,
                start,
                len,
            };
            if let Err(mpsc::SendError(r)) = requests.send(request) {
                self.spares.push(r.chunk);
                self.helper = None;
                self.ahead.clear();
                return;
            }
            self.ahead.push_back((seg.id, start, len));
            self.chunks += 1;
            self.bytes += len as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::io::{FileSystem, MemFs};
    use std::path::{Path, PathBuf};

    /// A segment of `len` bytes whose byte at offset `i` is `i * 7 % 251` (no structure: the
    /// reader only moves bytes).
    fn segment(len: u64) -> (MemFs, Segment) {
        let fs = MemFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let seg = segment_in(&fs, 1, len);
        (fs, seg)
    }

    /// Segment `id` of `len` bytes (as [`segment`]) in `fs`.
    fn segment_in(fs: &MemFs, id: u32, len: u64) -> Segment {
        let path = PathBuf::from(format!("/d/segment-{id}.log"));
        let file = fs.create_new(&path).unwrap();
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        file.write_all_at(&bytes, 0).unwrap();
        let map = file.map_read().unwrap();
        Segment {
            id: SegmentId(id),
            dir: 0,
            path,
            file,
            map,
            recycled: None,
        }
    }

    fn expect(offset: u64, n: usize) -> Vec<u8> {
        (offset..offset + n as u64)
            .map(|i| (i * 7 % 251) as u8)
            .collect()
    }

    #[test]
    fn sequential_reads_use_the_helper_and_return_the_right_bytes() {
        let len = 5 * SCAN_CHUNK as u64 + 12_345;
        let (_fs, seg) = segment(len);
        let mut r = ChunkReader::new();
        let mut off = 0u64;
        let mut step = 0u64;
        while off + 700 <= len {
            // Records of varying small sizes, read whole (as the scan does in unsealed segments).
            let n = 32 + (step * 37 % 650) as usize;
            assert_eq!(
                r.get(&seg, off, n, SCAN_CHUNK).unwrap(),
                &expect(off, n)[..]
            );
            off += n as u64;
            step += 1;
        }
        assert!(r.helper.is_some(), "a scan of several chunks reads ahead");
        // The first two chunks are read here (the helper starts with the second); the helper
        // reads every later one.
        assert_eq!(r.reads_here, 2, "chunks read on the scanning thread");
        assert!(r.chunks >= 6, "{} chunks", r.chunks);
    }

    #[test]
    fn jumps_and_large_reads_fall_back_to_reading_here() {
        let len = 4 * SCAN_CHUNK as u64;
        let (_fs, seg) = segment(len);
        let mut r = ChunkReader::new();
        // Two chunks read sequentially start the helper; then jump around.
        for off in [
            0u64,
            SCAN_CHUNK as u64 - 10,
            3 * SCAN_CHUNK as u64 + 5,
            100,
            2 * SCAN_CHUNK as u64 - OVERLAP - 100,
        ] {
            assert_eq!(
                r.get(&seg, off, 32, SCAN_CHUNK).unwrap(),
                &expect(off, 32)[..]
            );
        }
        // A record larger than the overlap straddling the boundary of the current chunk.
        let off = 2 * SCAN_CHUNK as u64 - 3 * OVERLAP;
        let n = 5 * OVERLAP as usize;
        assert_eq!(
            r.get(&seg, off, n, SCAN_CHUNK).unwrap(),
            &expect(off, n)[..]
        );
        // More than a chunk: the caller reads through the map.
        assert!(r.get(&seg, 0, SCAN_CHUNK + 1, SCAN_CHUNK).is_none());
    }

    /// Records larger than the overlap, their bodies read whole (as the scan reads PutBatch,
    /// Take and Commit records everywhere, and every record of an unsealed segment): one that
    /// straddles the end of the current chunk does not lie whole in the chunk read ahead, and
    /// must not make the reader throw away every chunk read ahead (reading each segment about
    /// four times over).
    #[test]
    fn records_larger_than_the_overlap_keep_the_reads_ahead() {
        let len = 12 * SCAN_CHUNK as u64;
        let (_fs, seg) = segment(len);
        let mut over = Vec::new();
        for rec in [20_000usize, 64 * 1024, 200_000, 500_000] {
            let mut r = ChunkReader::new();
            let mut off = 4096u64;
            while off + rec as u64 <= len {
                assert_eq!(
                    r.get(&seg, off, HEADER, SCAN_CHUNK).unwrap(),
                    &expect(off, HEADER)[..]
                );
                assert_eq!(
                    r.get(&seg, off, rec, SCAN_CHUNK).unwrap(),
                    &expect(off, rec)[..],
                    "record of {rec} at {off}"
                );
                off += rec as u64;
            }
            // Each chunk read ahead repeats OVERLAP bytes of the one before, a straddling record
            // is read again whole, and up to DEPTH chunks are read past the end: well under
            // twice the segment.
            if r.bytes >= len + len / 2 {
                over.push((rec, r.bytes));
            }
        }
        assert!(
            over.is_empty(),
            "(record size, bytes read) for a segment of {len}: {over:?}"
        );
    }

    const HEADER: usize = 32;

    /// Segments of a chunk or less each (tiny segments, or a log of many small ones): nothing
    /// can be read ahead within a segment, so no thread is started for it.
    #[test]
    fn small_segments_start_no_thread() {
        let fs = MemFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        for (len, count) in [(4096u64, 20u32), (SCAN_CHUNK as u64 / 2 + 1, 4)] {
            let segs: Vec<Segment> = (1..=count).map(|id| segment_in(&fs, id, len)).collect();
            let mut r = ChunkReader::new();
            for seg in &segs {
                let mut off = 0u64;
                while off + 100 <= len {
                    assert_eq!(
                        r.get(seg, off, 100, SCAN_CHUNK).unwrap(),
                        &expect(off, 100)[..]
                    );
                    off += 100;
                }
            }
            assert!(
                r.helper.is_none(),
                "segments of {len} bytes started a thread"
            );
            for seg in segs {
                fs.remove_file(&seg.path).unwrap();
            }
        }
    }
}
