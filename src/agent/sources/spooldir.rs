//! `spooldir`: ingests complete files dropped into a directory (Flume's spooling directory
//! source), one event per line (`deserializer = "line"`) or one per file (`"whole_file"`).
//!
//! **Model.** Every `poll_delay` the directory (and, with `recursive`, its subdirectories) is
//! listed; files whose names match `include_pattern` and not `ignore_pattern` are candidates,
//! except hidden files (names starting with `.`), files ending with `completed_suffix`, the
//! tracker directory, and names that are not UTF-8 (reported once by an error naming them). One file at a time is consumed, chosen by modification time
//! (`consume_order`). Its lines are read in batches of `batch_size` with a bounded buffer; a
//! line longer than `max_line_length` bytes is split into pieces of that length (Flume's LINE
//! deserializer truncates; splitting loses nothing); the bytes after the last `\n` are a last
//! line. After each batch's channel commit returned Ok, a tracker file (one per spool file,
//! in `tracker_dir`, holding the committed offset and the file's inode, size and mtime) is
//! rewritten atomically. Once every event of the file is committed the tracker is marked done,
//! then the file is renamed to `NAME + completed_suffix` (`delete_policy = "never"`) or deleted
//! (`"immediate"`), then the tracker is removed.
//!
//! **Errors.** A file whose size or mtime changes while it is read (or after it was read and
//! before it is renamed), or differs from its tracker at a restart, a file whose completed name
//! already exists, (whole_file) a file larger than `max_line_length`, and an event of it the
//! channel refuses for good (larger than its `max_event_size`: the batch's other events are
//! committed, the tracker stays before that batch) are errors naming the file: it is left in
//! place (not renamed), logged as an error, counted as a failed file, and skipped until the
//! source restarts; other files go on. What was committed from it stays
//! committed and its tracker keeps the offset, so nothing is lost.
//!
//! **Guarantee.** At-least-once. A crash (kill -9) after a commit and before the tracker write
//! makes the restarted source read that batch again (a duplicate of at most one batch); a crash
//! after the tracker is marked done and before the rename only repeats the rename. A file is
//! renamed or deleted only after all its events were committed.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::file_lines::{Cursor, Item, Limits, LongLines, read_lines};
use super::taildir::write_atomic;
use super::{Stopped, deliver_or_retry};
use crate::Event;
use crate::agent::component::{BoxFuture, ComponentError, Source, SourceContext};
use crate::agent::units::{ByteSize, HumanDuration};

/// `[sources.NAME]` keys of a `spooldir` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpooldirConfig {
    /// The spool directory (required).
    pub directory: PathBuf,
    /// Suffix of consumed files (`delete_policy = "never"`). Default `.COMPLETED`.
    #[serde(default = "default_suffix")]
    pub completed_suffix: String,
    /// `"never"` (rename; default) or `"immediate"` (delete).
    #[serde(default)]
    pub delete_policy: DeletePolicy,
    /// Regex on file names to consume. Default `^.*$`.
    #[serde(default = "default_include")]
    pub include_pattern: String,
    /// Regex on file names to skip. Default `^$`.
    #[serde(default = "default_ignore")]
    pub ignore_pattern: String,
    /// Where progress is kept; relative = inside `directory`. Default `.tidegate-spool`.
    #[serde(default = "default_tracker")]
    pub tracker_dir: PathBuf,
    /// Which file first, by mtime. Default `"oldest"`.
    #[serde(default)]
    pub consume_order: ConsumeOrder,
    /// Descend into subdirectories. Default false.
    #[serde(default)]
    pub recursive: bool,
    /// `"line"` (default) or `"whole_file"`.
    #[serde(default)]
    pub deserializer: Deserializer,
    /// line: longest line (longer ones are split); whole_file: largest file. Default 2048.
    #[serde(default = "default_max_line")]
    pub max_line_length: ByteSize,
    /// Most events per put transaction. Default 100.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Pause between listings of an idle directory. Default 500 ms.
    #[serde(default = "default_poll")]
    pub poll_delay: HumanDuration,
    /// Add the file's path as a header. Default false.
    #[serde(default)]
    pub file_header: bool,
    /// That header's key. Default `file`.
    #[serde(default = "default_file_key")]
    pub file_header_key: String,
    /// Add the file's name as a header. Default false.
    #[serde(default)]
    pub basename_header: bool,
    /// That header's key. Default `basename`.
    #[serde(default = "default_basename_key")]
    pub basename_header_key: String,
}

/// What happens to a consumed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletePolicy {
    /// Renamed with `completed_suffix`.
    #[default]
    Never,
    /// Deleted.
    Immediate,
}

/// Which file is consumed next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumeOrder {
    /// Oldest mtime first.
    #[default]
    Oldest,
    /// Newest mtime first.
    Youngest,
    /// Any.
    Random,
}

/// How a file becomes events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deserializer {
    /// One event per line.
    #[default]
    Line,
    /// One event per file.
    WholeFile,
}

fn default_suffix() -> String {
    ".COMPLETED".into()
}
fn default_include() -> String {
    "^.*$".into()
}
fn default_ignore() -> String {
    "^$".into()
}
fn default_tracker() -> PathBuf {
    ".tidegate-spool".into()
}
fn default_max_line() -> ByteSize {
    ByteSize(2048)
}
fn default_batch() -> usize {
    100
}
fn default_poll() -> HumanDuration {
    HumanDuration(Duration::from_millis(500))
}
fn default_file_key() -> String {
    "file".into()
}
fn default_basename_key() -> String {
    "basename".into()
}

impl SpooldirConfig {
    /// Checks the keys serde cannot; the error names the key.
    pub fn check(&self) -> Result<(), (String, String)> {
        self.patterns().map(|_| ())
    }

    fn patterns(&self) -> Result<(regex::Regex, regex::Regex), (String, String)> {
        super::file_lines::check_batch_and_line(self.batch_size, self.max_line_length.get())?;
        if self.completed_suffix.is_empty() || self.completed_suffix.contains('/') {
            return Err((
                "completed_suffix".into(),
                "must be non-empty and hold no '/'".into(),
            ));
        }
        if self.poll_delay.get().is_zero() {
            return Err(("poll_delay".into(), "must be more than 0".into()));
        }
        let re = |key: &str, p: &str| {
            regex::Regex::new(p).map_err(|e| (key.to_string(), format!("invalid regex {p:?}: {e}")))
        };
        Ok((
            re("include_pattern", &self.include_pattern)?,
            re("ignore_pattern", &self.ignore_pattern)?,
        ))
    }
}

/// Builds a `spooldir` source (checks the config).
pub fn build(name: &str, cfg: SpooldirConfig) -> Result<Box<dyn Source>, ComponentError> {
    let (include, ignore) = cfg
        .patterns()
        .map_err(|(k, m)| ComponentError::Config(format!("source {name}: {k}: {m}")))?;
    let tracker_dir = if cfg.tracker_dir.is_absolute() {
        cfg.tracker_dir.clone()
    } else {
        cfg.directory.join(&cfg.tracker_dir)
    };
    Ok(Box::new(SpooldirSource {
        cfg,
        include,
        ignore,
        tracker_dir,
    }))
}

/// The `spooldir` source.
#[derive(Debug)]
pub struct SpooldirSource {
    cfg: SpooldirConfig,
    include: regex::Regex,
    ignore: regex::Regex,
    tracker_dir: PathBuf,
}

/// A spool file's progress, as its tracker file records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tracker {
    /// The file's path.
    pub file: String,
    /// Offset of the first byte not committed.
    pub offset: u64,
    /// Identity of the file when it was first opened.
    pub inode: u64,
    /// Its size then.
    pub size: u64,
    /// Its mtime then (ns since the epoch).
    pub mtime_ns: i128,
    /// Every event committed; only the rename or delete is left.
    pub done: bool,
}

/// Identity of a file's content as the source checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ident {
    inode: u64,
    size: u64,
    mtime_ns: i128,
}

fn ident(m: &std::fs::Metadata) -> Ident {
    Ident {
        inode: m.ino(),
        size: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    }
}

/// Why a file is left in place.
#[derive(Debug)]
struct FileError(String);

/// What came of a file.
enum Outcome {
    Done,
    Failed(FileError),
    Stopped,
}

impl SpooldirSource {
    fn tracker_path(&self, file: &Path) -> PathBuf {
        let rel = file.strip_prefix(&self.cfg.directory).unwrap_or(file);
        let name = rel
            .to_string_lossy()
            .replace('%', "%25")
            .replace('/', "%2F");
        self.tracker_dir.join(tracker_name(&name))
    }

    fn completed_path(&self, file: &Path) -> PathBuf {
        let mut s = file.as_os_str().to_os_string();
        s.push(&self.cfg.completed_suffix);
        PathBuf::from(s)
    }

    /// Candidate files with their mtimes, and the files (not failed yet) whose names are not
    /// UTF-8 (they cannot be matched nor tracked: the caller reports them).
    fn list(&self, failed: &HashSet<PathBuf>) -> (Vec<(PathBuf, i128)>, Vec<PathBuf>) {
        let mut out = Vec::new();
        let mut odd = Vec::new();
        let mut dirs = vec![self.cfg.directory.clone()];
        while let Some(dir) = dirs.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in rd.filter_map(Result::ok) {
                let path = entry.path();
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    use std::os::unix::ffi::OsStrExt;
                    if !entry.file_name().as_bytes().starts_with(b".")
                        && !failed.contains(&path)
                        && std::fs::metadata(&path).is_ok_and(|m| m.is_file())
                    {
                        odd.push(path);
                    }
                    continue;
                };
                if name.starts_with('.') || path == self.tracker_dir {
                    continue;
                }
                // Real subdirectories only (a symbolic link to a directory could loop).
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    if self.cfg.recursive {
                        dirs.push(path);
                    }
                    continue;
                }
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if !meta.is_file()
                    || name.ends_with(&self.cfg.completed_suffix)
                    || !self.include.is_match(&name)
                    || self.ignore.is_match(&name)
                    || failed.contains(&path)
                {
                    continue;
                }
                out.push((path, ident(&meta).mtime_ns));
            }
        }
        (out, odd)
    }

    /// The next file to consume, and the files [`Self::list`] found with names not UTF-8.
    fn pick(&self, failed: &HashSet<PathBuf>) -> (Option<PathBuf>, Vec<PathBuf>) {
        let (mut files, odd) = self.list(failed);
        if files.is_empty() {
            return (None, odd);
        }
        match self.cfg.consume_order {
            ConsumeOrder::Oldest => files.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0))),
            ConsumeOrder::Youngest => files.sort_by(|a, b| (b.1, &a.0).cmp(&(a.1, &b.0))),
            ConsumeOrder::Random => {
                let i = fastrand::usize(..files.len());
                files.swap(0, i);
            }
        }
        (files.into_iter().next().map(|f| f.0), odd)
    }

    /// Removes the trackers of files that are gone (a crash between a file's rename or
    /// delete and its tracker's removal leaves one).
    fn remove_orphan_trackers(&self, source: &str) {
        let Ok(rd) = std::fs::read_dir(&self.tracker_dir) else {
            return;
        };
        for entry in rd.filter_map(Result::ok) {
            let tp = entry.path();
            let Ok(bytes) = std::fs::read(&tp) else {
                continue;
            };
            let Ok(t) = serde_json::from_slice::<Tracker>(&bytes) else {
                continue;
            };
            if !Path::new(&t.file).exists() && std::fs::remove_file(&tp).is_ok() {
                tracing::info!(source = %source, tracker = %tp.display(), file = %t.file, "removed the tracker of a file that is gone");
            }
        }
    }

    fn read_tracker(&self, file: &Path) -> Result<Option<Tracker>, FileError> {
        let tp = self.tracker_path(file);
        match std::fs::read(&tp) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                FileError(format!(
                    "tracker {} of {} is damaged: {e}",
                    tp.display(),
                    file.display()
                ))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FileError(format!(
                "tracker {} of {}: {e}",
                tp.display(),
                file.display()
            ))),
        }
    }

    /// Rewrites `file`'s tracker atomically (on the blocking pool).
    async fn write_tracker(&self, file: &Path, t: &Tracker) -> Result<(), FileError> {
        let tp = self.tracker_path(file);
        let json = serde_json::to_vec(t).map_err(|e| FileError(e.to_string()))?;
        let what = format!("tracker {} of {}", tp.display(), file.display());
        off_runtime(move || write_atomic(&tp, &json))
            .await?
            .map_err(|e| FileError(format!("cannot write {what}: {e}")))
    }

    /// Renames or deletes a file whose events are all committed, then drops its tracker (on
    /// the blocking pool).
    async fn finish(&self, file: &Path) -> Result<(), FileError> {
        let policy = self.cfg.delete_policy;
        let (file, to, tp) = (
            file.to_path_buf(),
            self.completed_path(file),
            self.tracker_path(file),
        );
        off_runtime(move || finish(policy, &file, &to, &tp)).await?
    }

    fn headers_for(&self, file: &Path) -> std::collections::BTreeMap<String, String> {
        let mut h = std::collections::BTreeMap::new();
        if self.cfg.file_header {
            h.insert(
                self.cfg.file_header_key.clone(),
                file.to_string_lossy().into_owned(),
            );
        }
        if self.cfg.basename_header {
            let base = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            h.insert(self.cfg.basename_header_key.clone(), base);
        }
        h
    }

    /// Consumes one file (blocking parts on the blocking pool).
    async fn consume(&self, ctx: &SourceContext, path: &Path) -> Outcome {
        match self.consume_inner(ctx, path).await {
            Ok(true) => Outcome::Done,
            Ok(false) => Outcome::Stopped,
            Err(e) => Outcome::Failed(e),
        }
    }

    async fn consume_inner(&self, ctx: &SourceContext, path: &Path) -> Result<bool, FileError> {
        let err = |e: io::Error| FileError(format!("{}: {e}", path.display()));
        let file = Arc::new(File::open(path).map_err(err)?);
        let start = ident(&file.metadata().map_err(err)?);
        let mut offset = 0;
        match self.read_tracker(path)? {
            None => {}
            Some(t)
                if t.inode == start.inode
                    && t.size == start.size
                    && t.mtime_ns == start.mtime_ns =>
            {
                if t.done {
                    tracing::info!(source = %ctx.name, file = %path.display(), "file was fully committed before a restart; completing it");
                    self.finish(path).await?;
                    return Ok(true);
                }
                if t.offset > start.size {
                    return Err(FileError(format!(
                        "tracker {} of {} records offset {} past the file's end ({} bytes); left in place",
                        self.tracker_path(path).display(),
                        path.display(),
                        t.offset,
                        start.size
                    )));
                }
                offset = t.offset;
                tracing::info!(source = %ctx.name, file = %path.display(), offset, "resuming file at its committed offset");
            }
            Some(t) if t.done => {
                // A new file under the name of one completed before a crash.
            }
            Some(t) => {
                return Err(FileError(format!(
                    "{} changed since it was partly read (size {} -> {}, committed up to offset {}); left in place",
                    path.display(),
                    t.size,
                    start.size,
                    t.offset
                )));
            }
        }
        if self.cfg.delete_policy == DeletePolicy::Never {
            let to = self.completed_path(path);
            if to.exists() {
                return Err(FileError(format!(
                    "{} cannot be consumed: {} already exists; left in place",
                    path.display(),
                    to.display()
                )));
            }
        }
        let max = self.cfg.max_line_length.get();
        if self.cfg.deserializer == Deserializer::WholeFile && start.size > max {
            return Err(FileError(format!(
                "{} is {} bytes, more than max_line_length {max} (whole_file); left in place",
                path.display(),
                start.size
            )));
        }
        let tracker = |offset, done| Tracker {
            file: path.to_string_lossy().into_owned(),
            offset,
            inode: start.inode,
            size: start.size,
            mtime_ns: start.mtime_ns,
            done,
        };
        let headers = self.headers_for(path);
        let unchanged = |file: &File, offset: u64| -> Result<(), FileError> {
            let now = ident(&file.metadata().map_err(err)?);
            if now != start {
                return Err(FileError(format!(
                    "{} changed while being read (size {} -> {}, mtime changed: {}); left in place, committed up to offset {offset}",
                    path.display(),
                    start.size,
                    now.size,
                    now.mtime_ns != start.mtime_ns
                )));
            }
            Ok(())
        };
        loop {
            if ctx.shutdown.is_cancelled() {
                return Ok(false);
            }
            unchanged(&file, offset)?;
            let whole = self.cfg.deserializer == Deserializer::WholeFile;
            let lim = Limits {
                max_line_length: max as usize,
                long_lines: LongLines::Split,
                max_items: self.cfg.batch_size,
                eof_ends_line: true,
            };
            let f = file.clone();
            let size = start.size;
            let read = off_runtime(move || read_batch(&f, offset, size, whole, lim))
                .await?
                .map_err(err)?;
            let Some((bodies, end)) = read else {
                break;
            };
            let events: Vec<Event> = bodies
                .into_iter()
                .map(|b| Event::from_parts(headers.clone(), b))
                .collect();
            // Checked again after reading: a change during the read is not committed.
            unchanged(&file, offset)?;
            // deliver_or_retry drops (counts as rejected) an event the channel refuses for
            // good; the file then still holds it and must not be renamed or deleted.
            let rejected_before = ctx.counters.rejected.load(Ordering::Relaxed);
            match deliver_or_retry(ctx, events).await {
                Ok(()) => {}
                Err(Stopped::Shutdown(_)) => return Ok(false),
            }
            let refused = ctx
                .counters
                .rejected
                .load(Ordering::Relaxed)
                .saturating_sub(rejected_before);
            if refused > 0 {
                return Err(FileError(format!(
                    "{}: {refused} event(s) of the batch at offsets {offset}..{end} refused by the channel (see the error before; e.g. larger than its max_event_size), the others committed; left in place, its tracker kept at offset {offset} (a restart delivers that batch again)",
                    path.display()
                )));
            }
            offset = end;
            self.write_tracker(path, &tracker(offset, false)).await?;
        }
        unchanged(&file, offset)?;
        self.write_tracker(path, &tracker(offset, true)).await?;
        drop(file);
        self.finish(path).await?;
        Ok(true)
    }
}

/// Longest encoded name kept whole in a tracker's file name: with `.json` and the `.tmp` of
/// its atomic rewrite it stays under the usual 255-byte limit of a file name.
const TRACKER_NAME_MAX: usize = 200;

/// A tracker's file name for the encoded relative name `name`: `name.json`, or for a longer
/// name its first bytes, `~` and a 64-bit hash of all of it (two CRC-32s), `.json`.
fn tracker_name(name: &str) -> String {
    if name.len() <= TRACKER_NAME_MAX {
        return format!("{name}.json");
    }
    let mut cut = TRACKER_NAME_MAX - 20;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut salted = crc32fast::Hasher::new();
    salted.update(b"tidegate-spool");
    salted.update(name.as_bytes());
    format!(
        "{}~{:08x}{:08x}.json",
        &name[..cut],
        crc32fast::hash(name.as_bytes()),
        salted.finalize()
    )
}

/// The next batch of a spool file from `offset`: bodies and the offset after them, or `None`
/// at its end. `whole`: the whole file (of `size` bytes, checked against the limit before) as
/// one body.
fn read_batch(
    file: &File,
    offset: u64,
    size: u64,
    whole: bool,
    lim: Limits,
) -> io::Result<Option<(Vec<Vec<u8>>, u64)>> {
    if whole {
        if offset >= size {
            return Ok(None);
        }
        let mut body = Vec::with_capacity(size as usize);
        file.take(lim.max_line_length as u64 + 1)
            .read_to_end(&mut body)?;
        let end = body.len() as u64;
        return Ok(Some((vec![body], end)));
    }
    let read = read_lines(file, Cursor::at(offset), lim)?;
    if read.items.is_empty() && read.at_eof {
        return Ok(None);
    }
    let bodies = read
        .items
        .into_iter()
        .filter_map(|(item, _)| match item {
            Item::Line { body, .. } => Some(body),
            Item::Skipped { .. } => None,
        })
        .collect();
    Ok(Some((bodies, read.end.pos)))
}

/// Runs blocking file work on the blocking pool.
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, FileError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FileError(format!("spooldir worker: {e}")))
}

/// Renames `file` to `to` (or deletes it), fsyncs its directory, removes its tracker `tp`.
fn finish(policy: DeletePolicy, file: &Path, to: &Path, tp: &Path) -> Result<(), FileError> {
    match policy {
        DeletePolicy::Immediate => std::fs::remove_file(file)
            .map_err(|e| FileError(format!("cannot delete {}: {e}", file.display())))?,
        DeletePolicy::Never => {
            if to.exists() {
                return Err(FileError(format!(
                    "cannot rename {} to {}: that name exists",
                    file.display(),
                    to.display()
                )));
            }
            std::fs::rename(file, to).map_err(|e| {
                FileError(format!(
                    "cannot rename {} to {}: {e}",
                    file.display(),
                    to.display()
                ))
            })?;
        }
    }
    if let Some(dir) = file.parent() {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    match std::fs::remove_file(tp) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError(format!(
            "cannot remove tracker {}: {e}",
            tp.display()
        ))),
    }
}

impl Source for SpooldirSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), ComponentError>> {
        Box::pin(async move {
            let this = Arc::new(*self);
            std::fs::create_dir_all(&this.tracker_dir).map_err(|e| {
                ComponentError::Other(format!(
                    "source {}: tracker_dir {}: {e}",
                    ctx.name,
                    this.tracker_dir.display()
                ))
            })?;
            if !this.cfg.directory.is_dir() {
                return Err(ComponentError::Other(format!(
                    "source {}: directory {} does not exist",
                    ctx.name,
                    this.cfg.directory.display()
                )));
            }
            this.remove_orphan_trackers(&ctx.name);
            let poll = this.cfg.poll_delay.get();
            let mut failed: HashSet<PathBuf> = HashSet::new();
            loop {
                if ctx.shutdown.is_cancelled() {
                    break;
                }
                let (lister, skip) = (this.clone(), failed.clone());
                let (picked, odd) = match off_runtime(move || lister.pick(&skip)).await {
                    Ok(p) => p,
                    Err(FileError(msg)) => return Err(ComponentError::Other(msg)),
                };
                for path in odd {
                    tracing::error!(source = %ctx.name, file = %path.display(), "spool file name is not UTF-8: not consumed (rename it); skipped until the source restarts");
                    failed.insert(path);
                }
                let Some(path) = picked else {
                    tokio::select! {
                        () = ctx.shutdown.cancelled() => break,
                        () = tokio::time::sleep(poll) => {}
                    }
                    continue;
                };
                match this.consume(&ctx, &path).await {
                    Outcome::Done => {
                        tracing::info!(source = %ctx.name, file = %path.display(), "file consumed");
                    }
                    Outcome::Stopped => break,
                    Outcome::Failed(FileError(msg)) => {
                        tracing::error!(source = %ctx.name, file = %path.display(), error = %msg, "spool file failed; skipped until the source restarts");
                        failed.insert(path);
                    }
                }
            }
            tracing::info!(source = %ctx.name, "spooldir source stopped");
            Ok(())
        })
    }
}
