//! `taildir`: follows the files matching the patterns of several file groups and emits one
//! event per complete line (Flume's TAILDIR source).
//!
//! **Model.** Files are told apart by device and inode. Every poll (`poll_interval`, or sooner when a
//! `notify` file-system event wakes the source; the polling is the fallback when watching is
//! unavailable or misses events) the groups' patterns are listed again: a file of an inode not
//! followed yet is opened and followed; a followed inode found under a new name (rotation by
//! rename) keeps its position; a followed file no longer matched by any pattern (renamed away,
//! deleted) is read to its end through the handle still open and dropped once two scans in a
//! row found it at its end and not grown (an unfinished last line it has then is not emitted).
//! Lines are read from the recorded position with positioned
//! reads into a bounded buffer (see the private `file_lines` module); a last line without its
//! `\n` is not emitted (its start offset is kept and it is read again once complete). A line
//! longer than `max_line_length` is split into pieces or skipped (`long_lines`).
//!
//! **Positions.** A JSON file (`position_file`) holds, per followed file, its inode (and
//! device: an entry without one, as Flume writes them, matches by inode alone), the offset
//! of the first line not committed (`pos`), its path, and a fingerprint (CRC-32 of its first
//! `fp_len` bytes, at most 1 KiB) that tells a rotated or new file that reuses an inode from the
//! file recorded. It is rewritten atomically (temporary file, fsync, rename, directory fsync)
//! only after a batch's channel commit returned Ok. At start a file whose inode and fingerprint
//! match an entry resumes at `pos`; other files start at 0 (or at their end with
//! `skip_to_end = true`, for the files present when the source starts).
//!
//! **Copy-truncate.** A followed file whose size drops below its position, or whose first bytes
//! no longer match its fingerprint, was truncated: it is read again from offset 0 (logged as a
//! warning naming it).
//!
//! **Guarantee.** At-least-once. Lines are committed to the channels before their position is
//! written, so a crash (kill -9) between the commit and the position write makes the restarted
//! source read those lines again (duplicates of at most the last batch per file). Nothing
//! committed is lost, and nothing complete in a followed file is skipped. A recorded file that
//! no pattern matches at a restart (renamed away while the agent was down) is looked for by
//! inode in its recorded directory and, if its fingerprint matches, read from its position to
//! its end. Three cases a restart cannot see: such a file moved to another directory (or
//! deleted), a file that appeared and was renamed to an unmatched name while the source was
//! down, and a truncated file that grew back past its old position with the same first KiB.
//! Copy-truncate: the lines written between the last read and the truncation are only in the
//! copy, so they are read only if a pattern matches the copy's name.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use super::file_lines::LongLines;
use super::file_lines::{Cursor, Item, Limits, read_lines};
use super::{Stopped, deliver_or_retry};
use crate::Event;
use crate::agent::component::{BoxFuture, ComponentError, Source, SourceContext};
use crate::agent::units::{ByteSize, HumanDuration};

/// Most bytes of a file's start covered by its fingerprint.
const FP_MAX: u64 = 1024;

/// `[sources.NAME]` keys of a `taildir` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaildirConfig {
    /// The JSON positions file (required).
    pub position_file: PathBuf,
    /// Most lines per put transaction. Default 100.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Longest line in bytes (not counting the line end). Default 64 KiB.
    #[serde(default = "default_max_line")]
    pub max_line_length: ByteSize,
    /// Longer lines: `"split"` (default) or `"skip"`.
    #[serde(default)]
    pub long_lines: LongLines,
    /// A file with no recorded position present at start begins at its end. Default false.
    #[serde(default)]
    pub skip_to_end: bool,
    /// Rescan and poll period. Default 1 s.
    #[serde(default = "default_poll")]
    pub poll_interval: HumanDuration,
    /// Add the file's path as a header. Default false.
    #[serde(default)]
    pub file_header: bool,
    /// That header's key. Default `file`.
    #[serde(default = "default_file_key")]
    pub file_header_key: String,
    /// The file groups, by name.
    pub filegroups: BTreeMap<String, FileGroupConfig>,
}

/// `[sources.NAME.filegroups.G]`: exactly one of `path`, or `directory` + `regex`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGroupConfig {
    /// A glob pattern (`/var/log/app/*.log`).
    #[serde(default)]
    pub path: Option<String>,
    /// A literal directory (with `regex`).
    #[serde(default)]
    pub directory: Option<PathBuf>,
    /// A regex matched against the file names in `directory`.
    #[serde(default)]
    pub regex: Option<String>,
    /// Static headers added to this group's events.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_batch() -> usize {
    100
}
fn default_max_line() -> ByteSize {
    ByteSize(64 << 10)
}
fn default_poll() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_file_key() -> String {
    "file".into()
}

/// How a group finds its files.
#[derive(Debug, Clone)]
enum Matcher {
    Glob(String),
    Regex(PathBuf, regex::Regex),
}

#[derive(Debug, Clone)]
struct Group {
    name: String,
    matcher: Matcher,
    headers: BTreeMap<String, String>,
}

impl TaildirConfig {
    /// Checks the keys serde cannot; the error names the key (relative to the source's table).
    pub fn check(&self) -> Result<(), (String, String)> {
        super::file_lines::check_batch_and_line(self.batch_size, self.max_line_length.get())?;
        if self.poll_interval.get().is_zero() {
            return Err(("poll_interval".into(), "must be more than 0".into()));
        }
        if self.filegroups.is_empty() {
            return Err((
                "filegroups".into(),
                "lists no file group (add [sources.NAME.filegroups.G] with path = \"...\")".into(),
            ));
        }
        self.groups().map(|_| ())
    }

    fn groups(&self) -> Result<Vec<Group>, (String, String)> {
        let mut out = Vec::new();
        for (name, g) in &self.filegroups {
            let key = format!("filegroups.{name}");
            let matcher = match (&g.path, &g.directory, &g.regex) {
                (Some(p), None, None) => {
                    glob::Pattern::new(p)
                        .map_err(|e| (format!("{key}.path"), format!("invalid glob {p:?}: {e}")))?;
                    Matcher::Glob(p.clone())
                }
                (None, Some(d), Some(r)) => {
                    let re = regex::Regex::new(r).map_err(|e| {
                        (format!("{key}.regex"), format!("invalid regex {r:?}: {e}"))
                    })?;
                    Matcher::Regex(d.clone(), re)
                }
                _ => {
                    return Err((
                        key,
                        "needs exactly one of `path` (a glob) or `directory` + `regex`".into(),
                    ));
                }
            };
            out.push(Group {
                name: name.clone(),
                matcher,
                headers: g.headers.clone(),
            });
        }
        Ok(out)
    }
}

/// Builds a `taildir` source (checks the config).
pub fn build(name: &str, cfg: TaildirConfig) -> Result<Box<dyn Source>, ComponentError> {
    let groups = cfg.groups().and_then(|g| cfg.check().map(|()| g));
    let groups =
        groups.map_err(|(k, m)| ComponentError::Config(format!("source {name}: {k}: {m}")))?;
    Ok(Box::new(TaildirSource { cfg, groups }))
}

/// The `taildir` source.
#[derive(Debug)]
pub struct TaildirSource {
    cfg: TaildirConfig,
    groups: Vec<Group>,
}

/// One entry of the positions file (Flume's `inode`, `pos`, `file`, plus a fingerprint and
/// the start of a line being skipped).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PositionEntry {
    /// The file's inode.
    pub inode: u64,
    /// The device of its file system (inode numbers are unique only within one; absent in
    /// Flume's format and older files: then the inode alone identifies the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<u64>,
    /// Offset of the first byte not committed (the start of a line, or inside a skipped one).
    pub pos: u64,
    /// The path it was last seen under.
    pub file: String,
    /// Bytes of the file's start the fingerprint covers.
    #[serde(default)]
    pub fp_len: u64,
    /// CRC-32 of those bytes.
    #[serde(default)]
    pub fp: u32,
    /// Set while an over-long line (long_lines = "skip") is being skipped: its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_start: Option<u64>,
    /// The file group it belongs to (for its headers after a restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// What identifies a file: its device and inode (inode numbers repeat across file systems).
type Key = (u64, u64);

fn key_of(m: &std::fs::Metadata) -> Key {
    (m.dev(), m.ino())
}

/// A followed file.
#[derive(Debug)]
struct Tracked {
    path: PathBuf,
    file: File,
    group: usize,
    cur: Cursor,
    fp_len: u64,
    fp: u32,
    /// Seen by the last scan.
    matched: bool,
    /// The last read found nothing new.
    idle: bool,
    /// Scans in a row that found it unmatched, idle and not grown.
    gone_scans: u32,
    /// Its size at the last scan.
    scan_size: u64,
}

/// The tailer's state; moved into blocking tasks for the file work.
struct Tailer {
    name: String,
    cfg: TaildirConfig,
    groups: Vec<Group>,
    files: BTreeMap<Key, Tracked>,
    /// Entries of the positions file not matched to a file yet (first scan only).
    saved: Vec<PositionEntry>,
    first_scan: bool,
    /// Round-robin start of the next read.
    next: Key,
}

/// A batch read from the files, with where each file is after it.
struct Batch {
    events: Vec<Event>,
    moves: Vec<(Key, Cursor)>,
    skipped: Vec<(PathBuf, u64)>,
}

/// CRC-32 of the first `len` bytes of `file`; `None` if it is shorter, or if `len` is over
/// [`FP_MAX`] (a damaged positions file: no fingerprint matches it).
fn crc_of(file: &File, len: u64) -> io::Result<Option<u32>> {
    if len > FP_MAX {
        return Ok(None);
    }
    let mut buf = vec![0u8; len as usize];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => return Ok(None),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(crc32fast::hash(&buf)))
}

impl Tailer {
    fn list(&self, g: &Group) -> Vec<PathBuf> {
        match &g.matcher {
            Matcher::Glob(p) => match glob::glob(p) {
                Ok(paths) => paths.filter_map(Result::ok).collect(),
                Err(_) => Vec::new(),
            },
            Matcher::Regex(dir, re) => match std::fs::read_dir(dir) {
                Ok(rd) => rd
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_str().is_some_and(|n| re.is_match(n)))
                    .map(|e| e.path())
                    .collect(),
                Err(_) => Vec::new(),
            },
        }
    }

    /// Lists the groups' files: follows new ones, notes renames, drops gone ones, detects
    /// truncation. True when it followed a file not followed before (its starting position
    /// must be recorded before anything else happens: with `skip_to_end` a restart would
    /// otherwise start it at its end again and skip what was appended meanwhile).
    fn scan(&mut self) -> bool {
        let before: HashSet<Key> = self.files.keys().copied().collect();
        let mut seen = HashSet::new();
        for gi in 0..self.groups.len() {
            for path in self.list(&self.groups[gi]) {
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if !meta.is_file() || !seen.insert(key_of(&meta)) {
                    continue;
                }
                if let Some(t) = self.files.get_mut(&key_of(&meta)) {
                    if t.path != path {
                        tracing::info!(source = %self.name, from = %t.path.display(), to = %path.display(), "followed file renamed");
                        t.path = path;
                    }
                    t.matched = true;
                    t.gone_scans = 0;
                    continue;
                }
                if let Err(e) = self.follow(gi, path.clone()) {
                    tracing::warn!(source = %self.name, file = %path.display(), error = %e, "cannot open file to follow");
                }
            }
        }
        if self.first_scan {
            let left = std::mem::take(&mut self.saved);
            for e in left {
                self.follow_renamed_away(e);
            }
            self.first_scan = false;
        }
        let mut drop = Vec::new();
        for (ino, t) in &mut self.files {
            let meta = t.file.metadata();
            let deleted = meta.as_ref().map(|m| m.nlink() == 0).unwrap_or(true);
            let size = meta.map(|m| m.len()).unwrap_or(0);
            t.matched = seen.contains(ino) && !deleted;
            if size != t.scan_size {
                // Grown (or truncated) since the last scan: a read that found it at its end
                // before that says nothing now; only a read after this scan can.
                t.idle = false;
            }
            // Dropped once it stayed unmatched, read to its end and without growth for two
            // scans in a row (its writer may still append right after a rotation).
            if !t.matched && t.idle && size == t.scan_size {
                t.gone_scans += 1;
                if t.gone_scans >= 2 {
                    drop.push(*ino);
                }
            } else {
                t.gone_scans = 0;
            }
            t.scan_size = size;
            check_truncated(&self.name, t);
        }
        for ino in drop {
            if let Some(t) = self.files.remove(&ino) {
                tracing::info!(source = %self.name, file = %t.path.display(), "file renamed away or deleted and read to its end; no longer followed");
            }
        }
        self.files.keys().any(|ino| !before.contains(ino))
    }

    /// A recorded file no pattern matches any more (renamed away while the source was down):
    /// looked for by inode in its recorded directory and, when its content still matches the
    /// fingerprint, read from its position to its end, then dropped like any file renamed away.
    fn follow_renamed_away(&mut self, e: PositionEntry) {
        let dir = match Path::new(&e.file).parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let found = std::fs::read_dir(&dir).ok().and_then(|rd| {
            rd.filter_map(Result::ok).map(|d| d.path()).find(|p| {
                // The directory names the file system: the inode alone is enough here.
                std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.ino() == e.inode)
            })
        });
        let same = found.as_ref().is_some_and(|p| {
            File::open(p).is_ok_and(|f| {
                f.metadata().is_ok_and(|m| e.pos <= m.len())
                    && crc_of(&f, e.fp_len).ok().flatten() == Some(e.fp)
            })
        });
        let Some(path) = found.filter(|_| same) else {
            tracing::info!(source = %self.name, inode = e.inode, file = %e.file, pos = e.pos, "recorded file no longer found; its position is dropped");
            return;
        };
        let group = e
            .group
            .as_ref()
            .and_then(|n| self.groups.iter().position(|g| &g.name == n))
            .unwrap_or(0);
        tracing::info!(source = %self.name, file = %path.display(), recorded = %e.file, "recorded file renamed away while stopped: reading it to its end");
        self.saved.push(e);
        let followed = self.follow(group, path.clone());
        self.saved.clear();
        match followed {
            Ok(key) => {
                if let Some(t) = self.files.get_mut(&key) {
                    t.matched = false;
                }
            }
            Err(err) => {
                tracing::warn!(source = %self.name, file = %path.display(), error = %err, "cannot open file to follow");
            }
        }
    }

    /// Follows `path` (unless its file is followed already); returns its key.
    fn follow(&mut self, group: usize, path: PathBuf) -> io::Result<Key> {
        let file = File::open(&path)?;
        let meta = file.metadata()?;
        let key = key_of(&meta);
        if self.files.contains_key(&key) {
            return Ok(key);
        }
        let mut cur = Cursor::at(0);
        let (mut fp_len, mut fp) = (0, 0);
        // The entry of this device and inode (or of this inode, recorded without a device);
        // else one of this inode on another device whose fingerprint matches (device numbers
        // may change across a reboot; another file system's file of the same inode number
        // keeps its entry).
        let recorded = self
            .saved
            .iter()
            .position(|e| e.inode == key.1 && e.dev.is_none_or(|d| d == key.0))
            .or_else(|| {
                self.saved.iter().position(|e| {
                    e.inode == key.1
                        && e.pos <= meta.len()
                        && crc_of(&file, e.fp_len).ok().flatten() == Some(e.fp)
                })
            });
        if let Some(e) = recorded.map(|i| self.saved.swap_remove(i)) {
            let same = e.pos <= meta.len() && crc_of(&file, e.fp_len)? == Some(e.fp);
            if same {
                cur = Cursor {
                    pos: e.pos,
                    skip_start: e.skip_start,
                };
                (fp_len, fp) = (e.fp_len, e.fp);
                tracing::info!(source = %self.name, file = %path.display(), pos = e.pos, "resuming at the recorded position");
            } else {
                tracing::warn!(source = %self.name, file = %path.display(), recorded = %e.file, "file has a recorded inode but not its content (truncated, or a new file): reading it from the start");
            }
        } else if self.first_scan && self.cfg.skip_to_end {
            cur = Cursor::at(meta.len());
        }
        tracing::info!(source = %self.name, file = %path.display(), pos = cur.pos, "following file");
        self.files.insert(
            key,
            Tracked {
                path,
                file,
                group,
                cur,
                fp_len,
                fp,
                matched: true,
                idle: false,
                gone_scans: 0,
                scan_size: meta.len(),
            },
        );
        Ok(key)
    }

    /// Reads up to `max` lines, round-robin over the files.
    fn read_batch(&mut self, max: usize) -> Batch {
        let mut batch = Batch {
            events: Vec::new(),
            moves: Vec::new(),
            skipped: Vec::new(),
        };
        let inos: Vec<Key> = self
            .files
            .range(self.next..)
            .chain(self.files.range(..self.next))
            .map(|(i, _)| *i)
            .collect();
        for ino in inos {
            let room = max.saturating_sub(batch.events.len());
            if room == 0 {
                self.next = ino;
                break;
            }
            let Some(t) = self.files.get_mut(&ino) else {
                continue;
            };
            check_truncated(&self.name, t);
            let lim = Limits {
                max_line_length: self.cfg.max_line_length.get() as usize,
                long_lines: self.cfg.long_lines,
                max_items: room,
                eof_ends_line: false,
            };
            let read = match read_lines(&t.file, t.cur, lim) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(source = %self.name, file = %t.path.display(), offset = t.cur.pos, error = %e, "read failed");
                    continue;
                }
            };
            t.idle = read.items.is_empty() && read.end == t.cur;
            if read.end == t.cur {
                continue;
            }
            let group = &self.groups[t.group];
            for (item, _) in read.items {
                match item {
                    Item::Line { body, .. } => {
                        let mut headers = group.headers.clone();
                        if self.cfg.file_header {
                            headers.insert(
                                self.cfg.file_header_key.clone(),
                                t.path.to_string_lossy().into_owned(),
                            );
                        }
                        batch.events.push(Event::from_parts(headers, body));
                    }
                    Item::Skipped { start } => batch.skipped.push((t.path.clone(), start)),
                }
            }
            batch.moves.push((ino, read.end));
            self.next = (ino.0, ino.1.wrapping_add(1));
        }
        batch
    }

    /// Applies committed moves.
    fn advance(&mut self, moves: &[(Key, Cursor)]) {
        for (ino, cur) in moves {
            if let Some(t) = self.files.get_mut(ino) {
                t.cur = *cur;
            }
        }
    }

    /// The positions file's entries (fingerprints refreshed).
    fn entries(&mut self) -> Vec<PositionEntry> {
        let mut out = Vec::new();
        for (ino, t) in &mut self.files {
            let want = t.cur.pos.min(FP_MAX);
            if want > t.fp_len
                && let Ok(Some(fp)) = crc_of(&t.file, want)
            {
                (t.fp_len, t.fp) = (want, fp);
            }
            out.push(PositionEntry {
                inode: ino.1,
                dev: Some(ino.0),
                pos: t.cur.pos,
                file: t.path.to_string_lossy().into_owned(),
                fp_len: t.fp_len,
                fp: t.fp,
                skip_start: t.cur.skip_start,
                group: self.groups.get(t.group).map(|g| g.name.clone()),
            });
        }
        out
    }
}

/// A followed file shorter than its position, or whose first bytes changed, is read again
/// from 0.
fn check_truncated(source: &str, t: &mut Tracked) {
    let size = match t.file.metadata() {
        Ok(m) => m.len(),
        Err(_) => return,
    };
    let changed = size < t.cur.pos
        || (t.fp_len > 0 && crc_of(&t.file, t.fp_len).ok().flatten() != Some(t.fp));
    if changed {
        tracing::warn!(source = %source, file = %t.path.display(), size, pos = t.cur.pos, "file was truncated (copy-truncate rotation?): reading it again from the start");
        t.cur = Cursor::at(0);
        (t.fp_len, t.fp) = (0, 0);
    }
}

/// Reads the positions file (missing = empty); a damaged one is an error naming it.
pub fn load_positions(path: &Path) -> Result<Vec<PositionEntry>, ComponentError> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Vec::new()),
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            ComponentError::Other(format!(
                "positions file {}: not a JSON array of positions: {e}",
                path.display()
            ))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(ComponentError::Other(format!(
            "positions file {}: {e}",
            path.display()
        ))),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file next to it, fsync, rename, fsync of
/// the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    File::open(&dir)?.sync_all()
}

fn save_positions(path: &Path, entries: &[PositionEntry]) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(entries).map_err(io::Error::other)?;
    write_atomic(path, &json)
}

/// Directories to watch for the groups (and whether recursively).
fn watch_dirs(groups: &[Group]) -> Vec<(PathBuf, bool)> {
    groups
        .iter()
        .map(|g| match &g.matcher {
            Matcher::Regex(dir, _) => (dir.clone(), false),
            Matcher::Glob(p) => {
                let path = Path::new(p);
                let mut prefix = PathBuf::new();
                let mut wild_parts = 0;
                for c in path.components() {
                    let s = c.as_os_str().to_string_lossy();
                    if wild_parts > 0 || s.contains(['*', '?', '[']) {
                        wild_parts += 1;
                    } else {
                        prefix.push(c);
                    }
                }
                if wild_parts == 0 {
                    // A literal file: watch its directory.
                    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                    (dir, false)
                } else {
                    (prefix, wild_parts > 1)
                }
            }
        })
        .map(|(d, r)| {
            if d.as_os_str().is_empty() {
                (PathBuf::from("."), r)
            } else {
                (d, r)
            }
        })
        .collect()
}

fn start_watcher(
    name: &str,
    groups: &[Group],
    wake: Arc<Notify>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let handler = move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            wake.notify_one();
        }
    };
    let mut w = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(source = %name, error = %e, "file-system events unavailable; polling only");
            return None;
        }
    };
    for (dir, recursive) in watch_dirs(groups) {
        let mode = if recursive {
            notify::RecursiveMode::Recursive
        } else {
            notify::RecursiveMode::NonRecursive
        };
        if let Err(e) = w.watch(&dir, mode) {
            tracing::warn!(source = %name, dir = %dir.display(), error = %e, "cannot watch directory; polling it");
        }
    }
    Some(w)
}

/// Runs `f` on the tailer off the async workers.
async fn blocking<T: Send + 'static>(
    tailer: Tailer,
    f: impl FnOnce(&mut Tailer) -> T + Send + 'static,
) -> Result<(Tailer, T), ComponentError> {
    tokio::task::spawn_blocking(move || {
        let mut t = tailer;
        let out = f(&mut t);
        (t, out)
    })
    .await
    .map_err(|e| ComponentError::Other(format!("taildir worker: {e}")))
}

impl Source for TaildirSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), ComponentError>> {
        Box::pin(async move {
            let this = *self;
            let pos_path = this.cfg.position_file.clone();
            if let Some(dir) = pos_path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    ComponentError::Other(format!(
                        "positions file directory {}: {e}",
                        dir.display()
                    ))
                })?;
            }
            let saved = load_positions(&pos_path)?;
            let wake = Arc::new(Notify::new());
            let _watcher = start_watcher(&ctx.name, &this.groups, wake.clone());
            let poll = this.cfg.poll_interval.get();
            let batch_size = this.cfg.batch_size;
            let mut tailer = Tailer {
                name: ctx.name.clone(),
                cfg: this.cfg,
                groups: this.groups,
                files: BTreeMap::new(),
                saved,
                first_scan: true,
                next: (0, 0),
            };
            let mut last_scan: Option<Instant> = None;
            let mut woke = false;
            loop {
                if ctx.shutdown.is_cancelled() {
                    break;
                }
                let scan = woke || last_scan.is_none_or(|t| t.elapsed() >= poll);
                if scan {
                    last_scan = Some(Instant::now());
                }
                let path = pos_path.clone();
                let (t, (batch, recorded)) = blocking(tailer, move |t| {
                    // Newly followed files are recorded at their starting position (committed
                    // positions only: new files start at 0 or, skip_to_end, at their end).
                    let recorded = if scan && t.scan() {
                        let entries = t.entries();
                        save_positions(&path, &entries)
                    } else {
                        Ok(())
                    };
                    (t.read_batch(batch_size), recorded)
                })
                .await?;
                tailer = t;
                recorded.map_err(|e| {
                    ComponentError::Other(format!(
                        "cannot write positions file {}: {e}",
                        pos_path.display()
                    ))
                })?;
                for (path, offset) in &batch.skipped {
                    ctx.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(source = %ctx.name, file = %path.display(), offset, limit = tailer.cfg.max_line_length.get(), "line longer than max_line_length skipped");
                }
                if batch.moves.is_empty() {
                    woke = tokio::select! {
                        () = ctx.shutdown.cancelled() => break,
                        () = wake.notified() => true,
                        () = tokio::time::sleep(poll) => false,
                    };
                    continue;
                }
                woke = false;
                if !batch.events.is_empty() {
                    let rejected_before = ctx.counters.rejected.load(Ordering::Relaxed);
                    match deliver_or_retry(&ctx, batch.events).await {
                        Ok(()) => {}
                        Err(Stopped::Shutdown(_)) => break,
                    }
                    let refused = ctx
                        .counters
                        .rejected
                        .load(Ordering::Relaxed)
                        .saturating_sub(rejected_before);
                    if refused > 0 {
                        // deliver_or_retry dropped them (its error does not know the files).
                        let ranges: Vec<String> = batch
                            .moves
                            .iter()
                            .filter_map(|(ino, end)| {
                                let t = tailer.files.get(ino)?;
                                Some(format!("{} {}..{}", t.path.display(), t.cur.pos, end.pos))
                            })
                            .collect();
                        tracing::warn!(source = %ctx.name, refused, lines_in = %ranges.join(", "), "lines refused by the channel for good (see the error before) were dropped; they are in these files at these offsets");
                    }
                }
                // Committed: now (and only now) the positions move and are recorded.
                let moves = batch.moves;
                let path = pos_path.clone();
                let (t, saved) = blocking(tailer, move |t| {
                    t.advance(&moves);
                    let entries = t.entries();
                    save_positions(&path, &entries)
                })
                .await?;
                tailer = t;
                saved.map_err(|e| {
                    ComponentError::Other(format!(
                        "cannot write positions file {}: {e}",
                        pos_path.display()
                    ))
                })?;
            }
            tracing::info!(source = %ctx.name, "taildir source stopped");
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn tailer(dir: &Path) -> Tailer {
        let cfg: TaildirConfig = toml::from_str(&format!(
            "position_file = \"{}\"\n[filegroups.f1]\npath = \"{}/*.log\"\n",
            dir.join("pos.json").display(),
            dir.display()
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let groups = cfg.groups().unwrap_or_else(|e| panic!("{e:?}"));
        Tailer {
            name: "t1".into(),
            cfg,
            groups,
            files: BTreeMap::new(),
            saved: Vec::new(),
            first_scan: true,
            next: (0, 0),
        }
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("{e}"));
        f.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn bodies(b: &Batch) -> Vec<String> {
        b.events
            .iter()
            .map(|e| String::from_utf8_lossy(e.body()).into_owned())
            .collect()
    }

    /// A file renamed away right after its writer appended to it, then not reached by the
    /// reads of the next scans (other files fill every batch, and with a slow channel every
    /// loop rescans), must not be dropped with its last lines unread: a read that found it
    /// at its end before it grew says nothing about it now.
    #[test]
    fn a_renamed_away_file_that_grew_is_not_dropped_before_it_is_read_again() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let a = dir.path().join("a.log");
        append(&a, "a1\n");
        let mut t = tailer(dir.path());
        assert!(t.scan());
        let b = t.read_batch(10);
        assert_eq!(bodies(&b), ["a1"]);
        t.advance(&b.moves);
        let b = t.read_batch(10);
        assert!(b.moves.is_empty(), "caught up: the file is idle");
        // The writer appends once more, the file is rotated away.
        append(&a, "a2\n");
        std::fs::rename(&a, dir.path().join("a.log.1")).unwrap_or_else(|e| panic!("{e}"));
        // Scans in a row with no read of this file in between.
        for _ in 0..3 {
            t.scan();
        }
        let b = t.read_batch(10);
        assert_eq!(
            bodies(&b),
            ["a2"],
            "the line appended before the rotation was lost"
        );
    }
}
