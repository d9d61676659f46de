//! Reading lines from a file at a byte offset, with a bounded buffer (shared by the `taildir`
//! and `spooldir` sources).
//!
//! The model: a position is always the offset of the first byte of a line that was not
//! consumed yet (or, while an over-long line is being skipped, the offset of the first byte not
//! looked at). A read starts there with positioned reads (`pread`, the file's cursor is not
//! used), returns the complete lines it found with the offset after each, and never holds more
//! than `max_line_length + 1` bytes of one line plus one read chunk. A last line without its
//! `\n` is not returned (the caller keeps its start offset and reads it again once it is
//! complete), unless the caller says the file is finished (`eof_ends_line`).
//!
//! A line longer than `max_line_length` bytes is either split into pieces of exactly
//! `max_line_length` bytes (the last piece is the rest) or skipped to the next `\n`
//! ([`LongLines`]). A `\n` ends a line; a `\r` right before it is removed too.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use serde::Deserialize;

/// Bytes asked for by one positioned read (tiny in unit tests, to cut lines across reads).
const CHUNK: usize = if cfg!(test) { 7 } else { 64 << 10 };

/// What to do with a line longer than `max_line_length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LongLines {
    /// Emit it as pieces of `max_line_length` bytes.
    #[default]
    Split,
    /// Drop it (counted as rejected and logged with file and offset).
    Skip,
}

/// One thing found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A line (or a piece of a split line) without its line end.
    Line {
        /// The bytes.
        body: Vec<u8>,
        /// Offset of its first byte.
        start: u64,
    },
    /// An over-long line that was skipped (long_lines = "skip"); reported once, when its `\n`
    /// is found (or at the end of a finished file).
    Skipped {
        /// Offset of its first byte.
        start: u64,
    },
}

/// What one read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Read {
    /// Items, each with the position right after it (where a reader that consumed it resumes,
    /// and whether it is then inside a skipped line).
    pub items: Vec<(Item, Cursor)>,
    /// True when the read reached the end of the file.
    pub at_eof: bool,
    /// Where the reader is after the read (after the last item, or further on when bytes of a
    /// skipped line were consumed without completing it).
    pub end: Cursor,
}

/// A reader's position in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Cursor {
    /// Offset of the next byte to look at.
    pub pos: u64,
    /// Inside an over-long line being skipped: bytes up to its `\n` are dropped; `pos` is
    /// then the offset of the first byte not looked at and `skip_start` the line's start.
    pub skip_start: Option<u64>,
}

/// Line-reading limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Longest line, in bytes, not counting the line end (at least 1).
    pub max_line_length: usize,
    /// What to do with longer lines.
    pub long_lines: LongLines,
    /// At most this many items per read.
    pub max_items: usize,
    /// The file is complete: bytes after the last `\n` are a last line.
    pub eof_ends_line: bool,
}

/// The keys both file sources check alike: `batch_size` at least 1, `max_line_length` from 1
/// byte to 1 GiB. The error names the key.
pub(crate) fn check_batch_and_line(
    batch_size: usize,
    max_line_length: u64,
) -> Result<(), (String, String)> {
    if batch_size == 0 {
        return Err(("batch_size".into(), "must be at least 1".into()));
    }
    if max_line_length == 0 || max_line_length > (1 << 30) {
        return Err((
            "max_line_length".into(),
            "must be between 1 byte and 1GiB".into(),
        ));
    }
    Ok(())
}

/// Reads items from `file` starting at `from`; see the module docs.
pub(crate) fn read_lines(file: &File, from: Cursor, lim: Limits) -> io::Result<Read> {
    let max = lim.max_line_length.max(1);
    let mut items = Vec::new();
    // `buf` holds the bytes from `cur.pos` on: the start of the current line or, while
    // skipping, the first byte not looked at. `scanned` bytes of it hold no '\n'.
    let mut buf: Vec<u8> = Vec::new();
    let mut cur = from;
    let mut scanned = 0usize;
    let mut at_eof = false;
    while items.len() < lim.max_items {
        match buf[scanned..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let nl = scanned + i;
                let after = Cursor::at(cur.pos + nl as u64 + 1);
                let line = strip_cr(&buf[..nl]);
                if let Some(start) = cur.skip_start.take() {
                    items.push((Item::Skipped { start }, after));
                } else if line.len() <= max {
                    let body = line.to_vec();
                    items.push((
                        Item::Line {
                            body,
                            start: cur.pos,
                        },
                        after,
                    ));
                } else if lim.long_lines == LongLines::Skip {
                    items.push((Item::Skipped { start: cur.pos }, after));
                } else {
                    cur = split_piece(&mut buf, cur, max, &mut items);
                    scanned = 0;
                    continue;
                }
                buf.drain(..=nl);
                cur = after;
                scanned = 0;
                continue;
            }
            None => scanned = buf.len(),
        }
        // No '\n' in `buf`.
        if cur.skip_start.is_some() {
            cur.pos += buf.len() as u64;
            buf.clear();
            scanned = 0;
        } else if buf.len() > max + 1 || (buf.len() == max + 1 && buf.last() != Some(&b'\r')) {
            // Too long whatever comes next (one byte over may be the `\r` of a `\r\n`).
            match lim.long_lines {
                LongLines::Split => {
                    cur = split_piece(&mut buf, cur, max, &mut items);
                    scanned = 0;
                    continue;
                }
                LongLines::Skip => {
                    cur.skip_start = Some(cur.pos);
                    cur.pos += buf.len() as u64;
                    buf.clear();
                    scanned = 0;
                }
            }
        }
        if at_eof {
            break;
        }
        let old = buf.len();
        buf.resize(old + CHUNK, 0);
        let n = read_full(file, &mut buf[old..], cur.pos + old as u64)?;
        buf.truncate(old + n);
        if n > 0 {
            continue;
        }
        at_eof = true;
        if !lim.eof_ends_line {
            break;
        }
        // The file is complete: what is left is its last line (or the end of a skipped one).
        if let Some(start) = cur.skip_start.take() {
            items.push((Item::Skipped { start }, cur));
        } else if !buf.is_empty() {
            let line = strip_cr(&buf);
            if line.len() > max {
                // Cannot happen (longer lines were cut above); split to be safe.
                cur = split_piece(&mut buf, cur, max, &mut items);
                continue;
            }
            let body = line.to_vec();
            let start = cur.pos;
            cur.pos += buf.len() as u64;
            buf.clear();
            items.push((Item::Line { body, start }, cur));
        }
        break;
    }
    Ok(Read {
        end: cur,
        at_eof,
        items,
    })
}

/// Emits the first `max` bytes of `buf` as a piece of a split line; returns the cursor after it.
fn split_piece(
    buf: &mut Vec<u8>,
    cur: Cursor,
    max: usize,
    items: &mut Vec<(Item, Cursor)>,
) -> Cursor {
    let take = max.min(buf.len());
    let body: Vec<u8> = buf.drain(..take).collect();
    let after = Cursor::at(cur.pos + take as u64);
    items.push((
        Item::Line {
            body,
            start: cur.pos,
        },
        after,
    ));
    after
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl Cursor {
    /// At the start of a line at `pos`.
    pub fn at(pos: u64) -> Cursor {
        Cursor {
            pos,
            skip_start: None,
        }
    }
}

/// Reads into `buf` at `offset` until it is full or the file ends; returns the bytes read.
fn read_full(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use proptest::prelude::*;

    use super::*;

    /// The items of `input` read in one piece, the obvious way (`None`: a skipped line).
    fn reference(input: &[u8], max: usize, mode: LongLines) -> Vec<Option<Vec<u8>>> {
        let mut parts: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
        let last = parts.pop().unwrap_or_default();
        if !last.is_empty() {
            parts.push(last);
        }
        let mut out = Vec::new();
        for p in parts {
            let l = p.strip_suffix(b"\r").unwrap_or(p);
            if l.len() <= max {
                out.push(Some(l.to_vec()));
            } else if mode == LongLines::Skip {
                out.push(None);
            } else {
                out.extend(l.chunks(max).map(|c| Some(c.to_vec())));
            }
        }
        out
    }

    fn file_with(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap_or_else(|e| panic!("{e}"));
        f.write_all(bytes).unwrap_or_else(|e| panic!("{e}"));
        f
    }

    proptest! {
        /// Reading a finished file in reads of any size, resuming from any committed item
        /// (or from the end of a read), gives the reference items, each once.
        #[test]
        fn any_reads_and_resumes_give_the_reference_items(
            input in prop::collection::vec(prop::sample::select(b"ab\r\n".to_vec()), 0..120),
            max in 1usize..6,
            skip in any::<bool>(),
            steps in prop::collection::vec((1usize..5, 0usize..6), 1..400),
        ) {
            let mode = if skip { LongLines::Skip } else { LongLines::Split };
            let file = file_with(&input);
            let mut cur = Cursor::at(0);
            let mut got = Vec::new();
            let mut done = false;
            for (max_items, keep) in steps {
                let lim = Limits { max_line_length: max, long_lines: mode, max_items, eof_ends_line: true };
                let read = read_lines(&file, cur, lim).unwrap_or_else(|e| panic!("{e}"));
                prop_assert!(read.items.len() <= max_items);
                if read.items.is_empty() {
                    prop_assert!(read.at_eof);
                    done = true;
                    break;
                }
                let keep = keep.clamp(1, read.items.len());
                let all = keep == read.items.len();
                for (item, after) in read.items.into_iter().take(keep) {
                    got.push(match item {
                        Item::Line { body, .. } => Some(body),
                        Item::Skipped { .. } => None,
                    });
                    cur = after;
                }
                if all {
                    cur = read.end;
                }
            }
            if done {
                prop_assert_eq!(got, reference(&input, max, mode));
                prop_assert_eq!(cur.pos, input.len() as u64);
            }
        }
    }

    proptest! {
        /// A growing file (taildir: `eof_ends_line = false`) read after each append of any
        /// size, resuming from the end of every read: once it ends with `\n`, the items are
        /// the reference items, each once.
        #[test]
        fn a_growing_file_read_between_appends_gives_the_reference_items(
            input in prop::collection::vec(prop::sample::select(b"ab\r\n".to_vec()), 0..120),
            max in 1usize..6,
            skip in any::<bool>(),
            cuts in prop::collection::vec(0usize..130, 0..10),
            max_items in 1usize..5,
        ) {
            let mode = if skip { LongLines::Skip } else { LongLines::Split };
            let mut input = input;
            input.push(b'\n');
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
            cuts.push(input.len());
            cuts.sort_unstable();
            let mut file = tempfile::tempfile().unwrap_or_else(|e| panic!("{e}"));
            let lim = Limits { max_line_length: max, long_lines: mode, max_items, eof_ends_line: false };
            let mut cur = Cursor::at(0);
            let mut got = Vec::new();
            let mut written = 0;
            for cut in cuts {
                file.write_all(&input[written..cut]).unwrap_or_else(|e| panic!("{e}"));
                written = cut;
                loop {
                    let read = read_lines(&file, cur, lim).unwrap_or_else(|e| panic!("{e}"));
                    let progressed = read.end != cur;
                    for (item, _) in read.items {
                        got.push(match item {
                            Item::Line { body, .. } => Some(body),
                            Item::Skipped { .. } => None,
                        });
                    }
                    cur = read.end;
                    if !progressed {
                        break;
                    }
                }
            }
            prop_assert_eq!(got, reference(&input, max, mode));
            prop_assert_eq!(cur.pos, input.len() as u64);
        }
    }

    #[test]
    fn an_unfinished_last_line_is_not_returned_until_complete() {
        let file = file_with(b"one\ntw");
        let lim = Limits {
            max_line_length: 10,
            long_lines: LongLines::Split,
            max_items: 10,
            eof_ends_line: false,
        };
        let read = read_lines(&file, Cursor::at(0), lim).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.items.len(), 1);
        assert_eq!(
            read.end,
            Cursor::at(4),
            "the position is the partial line's start"
        );
        assert!(read.at_eof);
    }

    #[test]
    fn a_skipped_line_without_its_newline_keeps_the_skip_state() {
        let file = file_with(b"ok\nxxxxxxxxxxxx");
        let lim = Limits {
            max_line_length: 4,
            long_lines: LongLines::Skip,
            max_items: 10,
            eof_ends_line: false,
        };
        let read = read_lines(&file, Cursor::at(0), lim).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.items.len(), 1);
        assert_eq!(
            read.end,
            Cursor {
                pos: 15,
                skip_start: Some(3)
            },
            "the skipped bytes are consumed, not buffered"
        );
    }
}
