//! The `file_roll` sink: events as lines of rolled files in a directory.
//!
//! ## Files
//! The sink writes into `<file_prefix>-<created_ms>-<n>.inprogress` and, when it rolls, renames
//! that file to `<file_prefix>-<created_ms>-<n>` (`created_ms`: milliseconds since the Unix
//! epoch when the file was created; `n` counts the files of one run, from 1). A file without
//! `.inprogress` is finished: nothing is ever written to it again. The sink rolls after a write
//! that brings the file to `roll_size` bytes or more, and when the file is older than
//! `roll_interval` (checked every second, and before each write); `0` turns either off. A file
//! is created only when there is an event to write, so an idle sink makes no empty files.
//!
//! ## Serializers
//! - `text`: the body and `\n` per event (a body with newlines in it spans several lines).
//! - `json`: one JSON object per line, `{"headers": {...}, "body": "..."}`, the HTTP source's
//!   format (a body that is not UTF-8 goes as `"body_base64"`).
//!
//! ## Durability and crashes
//! A delivery writes the whole batch with one `write` and `fdatasync`s the file before it
//! returns Ok, so the runner commits its take only once the batch is on disk. Creating a file,
//! renaming it and removing one are each followed by an fsync of the directory.
//!
//! A crash can leave the last `.inprogress` file with the beginning of a batch whose delivery
//! never returned, possibly ending in part of a line. When the sink starts, before writing
//! anything, it cuts every `<file_prefix>-*.inprogress` file of its directory back to its last
//! `\n`, fsyncs it and finishes it (renames it, fsyncs the directory; a file left empty is
//! removed). That is safe: every batch that was acknowledged was written whole, ending in `\n`,
//! and synced before its take was committed, so the bytes after the last `\n` belong to a batch
//! whose take was never committed, and the channel delivers that batch again after the restart.
//! The complete lines of such a batch are kept, so they appear twice (at-least-once). With the
//! `text` serializer a body that holds `\n` can be cut after one of its own newlines; `json`
//! lines never hold one.
//!
//! A failed write is undone (the file is cut back to its last synced length) and the delivery
//! fails, so the runner retries it later. A failed `fdatasync` cannot be undone or retried
//! (the kernel may have dropped the dirty pages): the sink refuses every later delivery until
//! the agent is restarted, and the start repairs the file as above.
//!
//! Each `file_roll` sink needs a directory, or a `file_prefix`, of its own.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Deserialize;

use crate::Event;
use crate::agent::component::{BoxFuture, ComponentError, Sink, SinkError};
use crate::agent::units::{ByteSize, HumanDuration};
use crate::agent::wire;

/// Suffix of the file being written.
pub const IN_PROGRESS: &str = ".inprogress";
/// How often the sink looks whether the open file is due to roll by time.
const ROLL_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The `file_roll` sink's keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRollSinkConfig {
    /// Where the files go (created if missing).
    pub directory: PathBuf,
    /// Roll a file this long after it was created; `"0s"` never rolls by time. Default 30 s.
    #[serde(default = "default_roll_interval")]
    pub roll_interval: HumanDuration,
    /// Roll a file once it holds this many bytes; 0 never rolls by size. Default 128 MiB.
    #[serde(default = "default_roll_size")]
    pub roll_size: ByteSize,
    /// `text` (default) or `json`.
    #[serde(default)]
    pub serializer: Serializer,
    /// First part of every file name. Default `events`.
    #[serde(default = "default_file_prefix")]
    pub file_prefix: String,
}

fn default_roll_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_roll_size() -> ByteSize {
    ByteSize(128 << 20)
}
fn default_file_prefix() -> String {
    "events".into()
}

/// How events become lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Serializer {
    /// The body and a newline.
    #[default]
    Text,
    /// One JSON object (headers and body) and a newline.
    Json,
}

impl Serializer {
    /// Appends `events`, one line each, to `out`.
    pub fn write(self, out: &mut Vec<u8>, events: &[Event]) {
        for e in events {
            match self {
                Serializer::Text => out.extend_from_slice(e.body()),
                Serializer::Json => wire::encode_json_event(out, e),
            }
            out.push(b'\n');
        }
    }
}

/// Builds a `file_roll` sink. Touches no file: the directory is created and repaired when the
/// sink first runs.
pub fn build(name: &str, cfg: FileRollSinkConfig) -> Result<Box<dyn Sink>, ComponentError> {
    Ok(Box::new(FileRollSink::new(name, cfg)?))
}

/// The `file_roll` sink.
pub struct FileRollSink {
    serializer: Serializer,
    roller: Arc<Mutex<Roller>>,
    timer: Option<tokio::task::JoinHandle<()>>,
}

impl FileRollSink {
    /// Checks `cfg`.
    pub fn new(name: &str, cfg: FileRollSinkConfig) -> Result<Self, ComponentError> {
        let prefix = &cfg.file_prefix;
        if prefix.is_empty() || prefix.contains(['/', '\\']) || prefix.starts_with('.') {
            return Err(ComponentError::Config(format!(
                "sink {name}: file_prefix {prefix:?} must be a non-empty file name part without '/' and not starting with '.'"
            )));
        }
        Ok(FileRollSink {
            serializer: cfg.serializer,
            roller: Arc::new(Mutex::new(Roller {
                name: name.to_owned(),
                dir: cfg.directory,
                prefix: cfg.file_prefix,
                roll_interval: cfg.roll_interval.0,
                roll_size: cfg.roll_size.0,
                started: false,
                lock: None,
                poisoned: None,
                current: None,
                next_n: 1,
            })),
            timer: None,
        })
    }

    /// Runs `f` on the roller off the async workers.
    async fn with_roller<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Roller) -> Result<T, SinkError> + Send + 'static,
    ) -> Result<T, SinkError> {
        let roller = self.roller.clone();
        tokio::task::spawn_blocking(move || f(&mut roller.lock()))
            .await
            .map_err(|e| SinkError::Delivery(format!("file_roll worker failed: {e}")))?
    }

    fn start_timer(&mut self) {
        if self.timer.is_some() {
            return;
        }
        let roller = Arc::downgrade(&self.roller);
        self.timer = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(ROLL_CHECK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(roller) = roller.upgrade() else {
                    return;
                };
                let rolled = tokio::task::spawn_blocking(move || roller.lock().roll_if_due()).await;
                if let Ok(Err(e)) = rolled {
                    tracing::warn!(error = %e, "file_roll: rolling by time failed");
                }
            }
        }));
    }
}

impl Drop for FileRollSink {
    fn drop(&mut self) {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
    }
}

impl Sink for FileRollSink {
    fn deliver<'a>(&'a mut self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.start_timer();
            let mut bytes = Vec::new();
            self.serializer.write(&mut bytes, batch);
            self.with_roller(move |r| r.write(&bytes)).await
        })
    }

    fn stop(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            if let Some(t) = self.timer.take() {
                t.abort();
            }
            self.with_roller(Roller::finish).await
        })
    }
}

/// The open file.
struct Current {
    file: File,
    /// Without the `.inprogress` suffix.
    final_path: PathBuf,
    opened: Instant,
    /// Bytes written and synced.
    len: u64,
}

/// The blocking half of the sink: files, writes and renames.
struct Roller {
    name: String,
    dir: PathBuf,
    prefix: String,
    roll_interval: Duration,
    roll_size: u64,
    started: bool,
    /// An exclusive lock on `<dir>/.<prefix>.lock`, held while the sink lives: two sinks (or
    /// agents) writing one directory with one prefix would finish each other's files.
    lock: Option<std::fs::File>,
    poisoned: Option<String>,
    current: Option<Current>,
    next_n: u64,
}

impl Roller {
    /// Creates the directory and finishes what an earlier run left in progress (once).
    fn start(&mut self) -> Result<(), SinkError> {
        if let Some(cause) = &self.poisoned {
            return Err(SinkError::Delivery(format!(
                "sink {} is stopped by an earlier failed fdatasync ({cause}); restart the agent: the unfinished file is repaired at start",
                self.name
            )));
        }
        if self.started {
            return Ok(());
        }
        // The directories about to be created, so their entries can be synced after.
        let missing: Vec<PathBuf> = self
            .dir
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
            .map(Path::to_path_buf)
            .collect();
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err("create directory", &self.dir, e))?;
        for created in missing.iter().rev() {
            sync_dir(
                created
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new(".")),
            )?;
        }
        let lock_path = self.dir.join(format!(".{}.lock", self.prefix));
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| io_err("create lock file", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(SinkError::Delivery(format!(
                    "directory {} with file_prefix {:?} is in use by another file_roll sink or agent; give each sink its own directory or file_prefix",
                    self.dir.display(),
                    self.prefix
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io_err("lock", &lock_path, e));
            }
        }
        self.lock = Some(lock);
        sync_dir(&self.dir)?;
        for path in leftover_files(&self.dir, &self.prefix)? {
            let repaired = repair_in_progress(&path)?;
            tracing::info!(sink = %self.name, file = %path.display(), outcome = repaired, "file_roll: finished a file an earlier run left in progress");
        }
        self.started = true;
        Ok(())
    }

    /// Appends `bytes` (whole lines) and syncs them; rolls as configured.
    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        self.start()?;
        if bytes.is_empty() {
            return self.roll_if_due();
        }
        if self.is_due() {
            self.roll()?;
        }
        if self.current.is_none() {
            self.current = Some(self.open_new()?);
        }
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        let path = in_progress(&current.final_path);
        if let Err(e) = current.file.write_all(bytes) {
            // Undo the part that was written, so the next batch starts on a line boundary.
            if let Err(undo) = current.file.set_len(current.len) {
                self.poisoned = Some(format!("undoing a failed write: {undo}"));
            }
            return Err(io_err("write", &path, e));
        }
        if let Err(e) = current.file.sync_data() {
            self.poisoned = Some(format!("fdatasync {}: {e}", path.display()));
            return Err(io_err("fdatasync", &path, e));
        }
        current.len += bytes.len() as u64;
        if self.roll_size > 0
            && current.len >= self.roll_size
            && let Err(e) = self.roll()
        {
            // The batch is on disk: failing it would only write it again. The file stays
            // `.inprogress` and is finished at the next start.
            tracing::warn!(sink = %self.name, error = %e, "file_roll: finishing a full file failed");
        }
        Ok(())
    }

    fn is_due(&self) -> bool {
        self.current.as_ref().is_some_and(|c| {
            !self.roll_interval.is_zero() && c.opened.elapsed() >= self.roll_interval
        })
    }

    fn roll_if_due(&mut self) -> Result<(), SinkError> {
        if self.started && self.poisoned.is_none() && self.is_due() {
            self.roll()?;
        }
        Ok(())
    }

    /// Finishes the open file (its bytes are synced already): rename, fsync the directory.
    fn roll(&mut self) -> Result<(), SinkError> {
        let Some(current) = self.current.take() else {
            return Ok(());
        };
        drop(current.file);
        let from = in_progress(&current.final_path);
        std::fs::rename(&from, &current.final_path).map_err(|e| io_err("rename", &from, e))?;
        sync_dir(&self.dir)
    }

    /// Stop: finish the open file.
    fn finish(&mut self) -> Result<(), SinkError> {
        if self.poisoned.is_some() {
            return Ok(());
        }
        self.roll()
    }

    fn open_new(&mut self) -> Result<Current, SinkError> {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        loop {
            let n = self.next_n;
            self.next_n += 1;
            let final_path = self.dir.join(format!("{}-{created}-{n}", self.prefix));
            if final_path.exists() {
                continue;
            }
            let path = in_progress(&final_path);
            match OpenOptions::new().append(true).create_new(true).open(&path) {
                Ok(file) => {
                    sync_dir(&self.dir)?;
                    return Ok(Current {
                        file,
                        final_path,
                        opened: Instant::now(),
                        len: 0,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create", &path, e)),
            }
        }
    }
}

fn in_progress(final_path: &Path) -> PathBuf {
    let mut s = final_path.as_os_str().to_owned();
    s.push(IN_PROGRESS);
    PathBuf::from(s)
}

/// The `<prefix>-*.inprogress` files of `dir`.
fn leftover_files(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, SinkError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err("list", dir, e))? {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if is_own_in_progress(&name, prefix) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// `<prefix>-<digits>-<digits>.inprogress`: a file this sink's prefix wrote.
fn is_own_in_progress(name: &str, prefix: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.strip_suffix(IN_PROGRESS))
    else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    rest.split_once('-')
        .is_some_and(|(ms, n)| digits(ms) && digits(n))
}

/// Cuts an `.inprogress` file back to its last `\n` and finishes it (or removes it when no
/// complete line is left). Returns what it did, for the log.
pub fn repair_in_progress(path: &Path) -> Result<&'static str, SinkError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let bytes = std::fs::read(path).map_err(|e| io_err("read", path, e))?;
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if keep == 0 {
        std::fs::remove_file(path).map_err(|e| io_err("remove", path, e))?;
        sync_dir(dir)?;
        return Ok("removed (no complete line)");
    }
    let outcome = if keep < bytes.len() {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io_err("open", path, e))?;
        file.set_len(keep as u64)
            .map_err(|e| io_err("truncate", path, e))?;
        file.sync_all().map_err(|e| io_err("fsync", path, e))?;
        "cut back to its last complete line and finished"
    } else {
        "finished"
    };
    let name = path.to_string_lossy();
    let final_path = PathBuf::from(name.strip_suffix(IN_PROGRESS).unwrap_or(&name));
    std::fs::rename(path, &final_path).map_err(|e| io_err("rename", path, e))?;
    sync_dir(dir)?;
    Ok(outcome)
}

fn sync_dir(dir: &Path) -> Result<(), SinkError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("fsync directory", dir, e))
}

fn io_err(op: &str, path: &Path, e: std::io::Error) -> SinkError {
    SinkError::Io(std::io::Error::new(
        e.kind(),
        format!("{op} {}: {e}", path.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_its_own_prefix_is_repaired() {
        assert!(is_own_in_progress("events-17-1.inprogress", "events"));
        assert!(!is_own_in_progress("events-x-17-1.inprogress", "events"));
        assert!(!is_own_in_progress("events-17-1", "events"));
        assert!(!is_own_in_progress("events-17-.inprogress", "events"));
        assert!(is_own_in_progress("events-x-17-1.inprogress", "events-x"));
    }
}

#[cfg(test)]
mod shared_directory_tests {
    use super::*;

    fn cfg(dir: &Path) -> FileRollSinkConfig {
        FileRollSinkConfig {
            directory: dir.to_path_buf(),
            roll_interval: HumanDuration(Duration::ZERO),
            roll_size: ByteSize(0),
            serializer: Serializer::Text,
            file_prefix: "events".into(),
        }
    }

    fn finished(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| !p.to_string_lossy().ends_with(IN_PROGRESS))
            .map(|p| {
                let b = std::fs::read(&p).unwrap_or_default();
                (p, b)
            })
            .collect();
        out.sort();
        out
    }

    /// Two file_roll sinks on one directory with one prefix (say two members of a load_balance
    /// group): the second must not start, or its start would "repair" the first one's live
    /// `.inprogress` file and the first would keep writing into a finished file (found in
    /// review). The second one's deliveries fail, naming the directory and the prefix.
    #[tokio::test]
    async fn a_second_sink_on_the_same_directory_and_prefix_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut a = FileRollSink::new("a", cfg(dir.path())).unwrap_or_else(|e| panic!("{e}"));
        let mut b = FileRollSink::new("b", cfg(dir.path())).unwrap_or_else(|e| panic!("{e}"));
        let ev = |s: &str| Event::new(s.as_bytes().to_vec());
        assert!(a.deliver(&[ev("a1")]).await.is_ok());
        let refused = b.deliver(&[ev("b1")]).await;
        assert!(
            matches!(&refused, Err(SinkError::Delivery(m)) if m.contains("in use by another")),
            "{refused:?}"
        );
        let before = finished(dir.path());
        assert!(a.deliver(&[ev("a2")]).await.is_ok());
        let after = finished(dir.path());
        for (path, bytes) in &before {
            let now = after.iter().find(|(p, _)| p == path).map(|(_, b)| b);
            assert_eq!(
                now,
                Some(bytes),
                "finished file {} changed after it was finished",
                path.display()
            );
        }
    }
}
