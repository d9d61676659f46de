//! The raw baseline: what the disk allows a durable log, measured with nothing but `pwrite` and
//! `fdatasync`.
//!
//! A [`RawFile`] is zero-filled and synced once, then overwritten in place, wrapping around at
//! its end: the best case for a durable log on ext4 (no size or extent change to journal on each
//! `fdatasync`; `../shared/reference/disk-limits.md` measures about twice the commit rate of a
//! growing file). [`RawFile::append_sync`] is the other floor, a file that grows, which a log
//! that keeps new bytes pays once its volume outgrows any ring.
//!
//! `tidegate bench` and the criterion benches (`benches/common`) share this one implementation.
//! [`put_rate`] is the baseline run `tidegate bench` interleaves with the channel's rounds.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A preallocated file that the raw baseline overwrites in place (see the module docs).
#[derive(Debug)]
pub struct RawFile {
    file: File,
    path: PathBuf,
    size: u64,
    pos: u64,
}

impl RawFile {
    /// Creates (or truncates) `path`, fills it with `size` bytes of zeros and syncs it. With
    /// `size` 0 the file starts empty, for [`RawFile::append_sync`].
    pub fn create(path: &Path, size: u64) -> io::Result<RawFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let zeros = vec![0u8; 1 << 20];
        let mut off = 0;
        while off < size {
            let n = (size - off).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], off)?;
            off += n as u64;
        }
        file.sync_all()?;
        Ok(RawFile {
            file,
            path: path.to_path_buf(),
            size,
            pos: 0,
        })
    }

    /// Writes `buf` at the current position (wrapping to 0 when it does not fit) and
    /// `fdatasync`s it.
    pub fn write_sync(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write(buf)?;
        self.file.sync_data()
    }

    /// Appends `buf` at the end of the file (which grows; no wrapping) and `fdatasync`s it.
    pub fn append_sync(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, self.pos)?;
        self.pos += buf.len() as u64;
        self.file.sync_data()
    }

    /// Writes `buf` at the current position (wrapping likewise) without syncing.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.pos + buf.len() as u64 > self.size {
            self.pos = 0;
        }
        self.file.write_all_at(buf, self.pos)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Reads `buf.len()` bytes at the read position `*pos` (wrapping likewise) and advances it.
    pub fn read(&self, buf: &mut [u8], pos: &mut u64) -> io::Result<()> {
        if *pos + buf.len() as u64 > self.size {
            *pos = 0;
        }
        self.file.read_exact_at(buf, *pos)?;
        *pos += buf.len() as u64;
        Ok(())
    }

    /// `fdatasync`.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its preallocated size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// The size [`put_rate`] wants for a baseline of `events` events of `event_size` bytes per round:
/// the bytes of a round, at least one batch, at most 256 MiB (it wraps).
pub fn ring_size(events: u64, event_size: usize, batch: usize) -> u64 {
    let batch_bytes = (event_size as u64).saturating_mul(batch as u64).max(1);
    events
        .saturating_mul(event_size as u64)
        .clamp(batch_bytes, (256 << 20).max(batch_bytes))
}

/// One run of the raw baseline: `events` events of `event_size` bytes written in batches of
/// `batch` (the last batch may be shorter), each batch one `pwrite` of the batch's bytes and one
/// `fdatasync`. Returns the time it took.
pub fn put_rate(
    raw: &mut RawFile,
    event_size: usize,
    batch: usize,
    events: u64,
) -> io::Result<Duration> {
    let batch = batch.max(1) as u64;
    let buf = vec![7u8; event_size * batch as usize];
    let started = Instant::now();
    let mut left = events;
    while left > 0 {
        let k = left.min(batch);
        raw.write_sync(&buf[..event_size * k as usize])?;
        left -= k;
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_wraps_at_the_preallocated_size() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut f = RawFile::create(&dir.path().join("raw"), 10)?;
        f.write_sync(b"abcdef")?;
        f.write_sync(b"ghijkl")?; // does not fit after 6 bytes: wraps to 0
        let mut buf = [0u8; 10];
        f.file().read_exact_at(&mut buf, 0)?;
        assert_eq!(&buf, b"ghijkl\0\0\0\0");
        assert_eq!(f.file().metadata()?.len(), 10);
        Ok(())
    }

    #[test]
    fn put_rate_writes_the_requested_events_in_batches() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        // 25 events of 4 bytes in batches of 10: writes of 40, 40 and 20 bytes.
        let mut ring = RawFile::create(&dir.path().join("ring"), ring_size(25, 4, 10))?;
        assert_eq!(ring.size(), 100);
        put_rate(&mut ring, 4, 10, 25)?;
        assert_eq!(ring.pos, 100);
        // The ring never shrinks below one batch.
        assert_eq!(ring_size(1, 512, 100), 51_200);
        let mut grow = RawFile::create(&dir.path().join("grow"), 0)?;
        grow.append_sync(b"xy")?;
        grow.append_sync(b"z")?;
        assert_eq!(grow.file().metadata()?.len(), 3);
        Ok(())
    }
}
