//! The `spooldir` source on a real directory, delivering into a real memory channel: files
//! ingested line by line or whole, renamed or deleted only after all their events were
//! committed, a stop mid-file resumed at the committed offset, and the errors (a file changed
//! while read, a completed name that exists, a whole file too large) that name the file and
//! leave it in place.

mod components_common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use components_common::{ChannelDeliver, Running, bodies, drain};
use tidegate::agent::component::{BoxFuture, Deliver, DeliverError};
use tidegate::agent::sources::spooldir::{self, SpooldirConfig, Tracker};
use tidegate::{Event, MemoryChannel, MemoryChannelConfig};

const WAIT: Duration = Duration::from_secs(20);

fn memory() -> Arc<MemoryChannel> {
    Arc::new(MemoryChannel::new(MemoryChannelConfig::default()))
}

fn config(spool: &Path, extra: &str) -> SpooldirConfig {
    let text = format!(
        "directory = \"{}\"\npoll_delay = \"50ms\"\n{extra}",
        spool.display()
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("config: {e}\n{text}"))
}

fn start(cfg: SpooldirConfig, output: Arc<dyn Deliver>) -> Running {
    Running::start(spooldir::build("s1", cfg).expect("build"), output)
}

/// Polls `ok` until it holds (bounded by [`WAIT`]).
async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn numbered(from: u32, to: u32, prefix: &str) -> String {
    (from..=to).map(|i| format!("{prefix}{i}\n")).collect()
}

fn expected(from: u32, to: u32, prefix: &str) -> Vec<String> {
    (from..=to).map(|i| format!("{prefix}{i}")).collect()
}

/// Delivers the first `allow` batches into the channel, then refuses (channel full) until
/// opened.
struct Gate {
    inner: ChannelDeliver,
    allow: usize,
    calls: AtomicUsize,
    open: AtomicBool,
}

impl Gate {
    fn new(ch: &Arc<MemoryChannel>, allow: usize) -> Arc<Gate> {
        Arc::new(Gate {
            inner: ChannelDeliver(ch.clone()),
            allow,
            calls: AtomicUsize::new(0),
            open: AtomicBool::new(false),
        })
    }
}

impl Deliver for Gate {
    fn deliver(&self, events: Vec<Event>) -> BoxFuture<'_, Result<(), DeliverError>> {
        let n = self.calls.fetch_add(1, SeqCst);
        if n < self.allow || self.open.load(SeqCst) {
            return self.inner.deliver(events);
        }
        Box::pin(async {
            Err(DeliverError::Full {
                channel: "c1".into(),
            })
        })
    }
}

/// The log lines of the current thread (the tests run the source on a current-thread runtime).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log")).into_owned()
    }
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let log = self.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || log.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_default(sub)
    }
}

/// Lines of several files become events with the file and basename headers; each file is
/// renamed with the suffix afterwards and its tracker removed; hidden files, completed files
/// and subdirectories (recursive = false) are left alone; a last line without `\n` counts.
#[tokio::test]
async fn files_are_ingested_then_renamed_and_others_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path();
    std::fs::write(spool.join("1.txt"), numbered(1, 5, "a")).expect("write");
    std::fs::write(spool.join("2.txt"), "b1\r\nb2\n\nb3").expect("write");
    std::fs::write(spool.join(".hidden"), "h\n").expect("write");
    std::fs::write(spool.join("old.txt.COMPLETED"), "done\n").expect("write");
    std::fs::write(spool.join("skip.tmp"), "ignored\n").expect("write");
    std::fs::create_dir(spool.join("sub")).expect("mkdir");
    std::fs::write(spool.join("sub/3.txt"), "sub\n").expect("write");
    let cfg = config(
        spool,
        "batch_size = 2\nfile_header = true\nbasename_header = true\nignore_pattern = \"\\\\.tmp$\"\n",
    );
    let ch = memory();
    let src = start(cfg, Arc::new(ChannelDeliver(ch.clone())));
    wait_until("both files completed", || {
        spool.join("1.txt.COMPLETED").exists() && spool.join("2.txt.COMPLETED").exists()
    })
    .await;
    src.stop().await;
    let got = drain(ch.as_ref());
    let mut want = expected(1, 5, "a");
    want.extend(["b1", "b2", "", "b3"].map(String::from));
    assert_eq!(bodies(&got), want, "every line once, in file order");
    let e = &got[0];
    assert_eq!(
        e.headers().get("file").map(String::as_str),
        spool.join("1.txt").to_str()
    );
    assert_eq!(
        e.headers().get("basename").map(String::as_str),
        Some("1.txt")
    );
    assert!(!spool.join("1.txt").exists() && !spool.join("2.txt").exists());
    for left in [".hidden", "old.txt.COMPLETED", "skip.tmp", "sub/3.txt"] {
        assert!(spool.join(left).exists(), "{left} left alone");
    }
    let trackers = std::fs::read_dir(spool.join(".tidegate-spool"))
        .expect("tracker dir")
        .count();
    assert_eq!(trackers, 0, "trackers removed once files are completed");
}

/// A file is renamed only after all its events were committed: while the channel refuses the
/// second batch the file stays, its tracker at the first batch's end. A stop there and a new
/// source resume at that offset: every line once.
#[tokio::test]
async fn completion_waits_for_every_commit_and_a_restart_resumes_mid_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path();
    let file = spool.join("in.log");
    std::fs::write(&file, numbered(1, 7, "x")).expect("write");
    let ch = memory();
    let gate = Gate::new(&ch, 1);
    let src = start(config(spool, "batch_size = 3\n"), gate.clone());
    wait_until("the second batch is retried", || {
        gate.calls.load(SeqCst) >= 3
    })
    .await;
    assert!(file.exists(), "not renamed while events are uncommitted");
    assert!(!spool.join("in.log.COMPLETED").exists());
    let tracker: Tracker = serde_json::from_slice(
        &std::fs::read(spool.join(".tidegate-spool/in.log.json")).expect("tracker"),
    )
    .expect("tracker json");
    assert_eq!(tracker.offset, "x1\nx2\nx3\n".len() as u64);
    assert!(!tracker.done);
    src.stop().await;
    assert!(file.exists(), "a stopped source leaves the file");

    let src = start(
        config(spool, "batch_size = 3\n"),
        Arc::new(ChannelDeliver(ch.clone())),
    );
    wait_until("the file completed", || {
        spool.join("in.log.COMPLETED").exists()
    })
    .await;
    src.stop().await;
    assert_eq!(
        bodies(&drain(ch.as_ref())),
        expected(1, 7, "x"),
        "resumed at the committed offset: nothing lost, nothing twice"
    );
}

/// delete_policy = "immediate" deletes consumed files; whole_file makes one event per file and
/// refuses (leaves in place, names the file and its size) a file over max_line_length.
#[tokio::test]
async fn whole_file_and_delete_immediate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path();
    std::fs::write(spool.join("1.bin"), b"one\ntwo\n").expect("write");
    std::fs::write(spool.join("2.bin"), vec![b'z'; 100]).expect("write");
    std::fs::write(spool.join("3.bin"), b"three").expect("write");
    let log = Log::default();
    let _guard = log.capture();
    let ch = memory();
    let src = start(
        config(
            spool,
            "deserializer = \"whole_file\"\ndelete_policy = \"immediate\"\nmax_line_length = 64\n",
        ),
        Arc::new(ChannelDeliver(ch.clone())),
    );
    wait_until("1 and 3 deleted", || {
        !spool.join("1.bin").exists() && !spool.join("3.bin").exists()
    })
    .await;
    wait_until("the error about 2.bin", || {
        log.text().contains("2.bin is 100 bytes")
    })
    .await;
    src.stop().await;
    assert_eq!(bodies(&drain(ch.as_ref())), ["one\ntwo\n", "three"]);
    assert!(
        spool.join("2.bin").exists(),
        "the oversize file is left in place"
    );
    assert!(
        !spool.join("1.bin.COMPLETED").exists(),
        "deleted, not renamed"
    );
}

/// A file that grows while it is being read: the lines committed before stay committed, the
/// file is left in place (not renamed) with an error naming it, its tracker keeps the
/// committed offset, and the next file is still consumed.
#[tokio::test]
async fn a_file_changed_while_read_is_an_error_naming_it_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path();
    let first = spool.join("1.log");
    std::fs::write(&first, numbered(1, 6, "f")).expect("write");
    std::fs::write(spool.join("2.log"), numbered(1, 2, "g")).expect("write");
    let log = Log::default();
    let _guard = log.capture();
    let ch = memory();
    let gate = Gate::new(&ch, 1);
    let src = start(config(spool, "batch_size = 2\n"), gate.clone());
    wait_until("the second batch is retried", || {
        gate.calls.load(SeqCst) >= 2
    })
    .await;
    OpenOptions::new()
        .append(true)
        .open(&first)
        .expect("open")
        .write_all(b"f7\n")
        .expect("append");
    gate.open.store(true, SeqCst);
    wait_until("2.log completed", || spool.join("2.log.COMPLETED").exists()).await;
    src.stop().await;
    let text = log.text();
    assert!(
        text.contains("1.log changed while being read"),
        "the error names the file: {text}"
    );
    assert!(first.exists(), "left in place");
    assert!(!spool.join("1.log.COMPLETED").exists(), "not renamed");
    let got = bodies(&drain(ch.as_ref()));
    assert_eq!(got, ["f1", "f2", "f3", "f4", "g1", "g2"]);
    let tracker: Tracker = serde_json::from_slice(
        &std::fs::read(spool.join(".tidegate-spool/1.log.json")).expect("tracker"),
    )
    .expect("tracker json");
    assert_eq!(
        tracker.offset,
        "f1\nf2\nf3\nf4\n".len() as u64,
        "the tracker keeps the committed offset"
    );
}

/// A file whose completed name already exists is an error naming both; the file is not read.
#[tokio::test]
async fn a_completed_name_that_exists_is_an_error_naming_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path();
    std::fs::write(spool.join("a.log"), "new\n").expect("write");
    std::fs::write(spool.join("a.log.COMPLETED"), "old\n").expect("write");
    let log = Log::default();
    let _guard = log.capture();
    let ch = memory();
    let src = start(config(spool, ""), Arc::new(ChannelDeliver(ch.clone())));
    wait_until("the collision error", || {
        log.text().contains("already exists")
    })
    .await;
    src.stop().await;
    let text = log.text();
    assert!(
        text.contains("a.log cannot be consumed") && text.contains("a.log.COMPLETED"),
        "{text}"
    );
    assert_eq!(drain(ch.as_ref()).len(), 0, "nothing read from it");
    assert_eq!(std::fs::read(spool.join("a.log")).expect("kept"), b"new\n");
    assert_eq!(
        std::fs::read(spool.join("a.log.COMPLETED")).expect("kept"),
        b"old\n"
    );
}

/// recursive = true consumes files in subdirectories (renamed where they are); a tracker left
/// by a crash after its file's rename is removed at start.
#[tokio::test]
async fn recursive_directories_and_orphan_trackers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path();
    std::fs::create_dir_all(spool.join("sub/deeper")).expect("mkdir");
    std::fs::write(spool.join("sub/deeper/a.txt"), "deep\n").expect("write");
    std::fs::write(spool.join("top.txt"), "top\n").expect("write");
    let trackers = spool.join(".tidegate-spool");
    std::fs::create_dir_all(&trackers).expect("mkdir");
    let orphan = trackers.join("gone.txt.json");
    let t = Tracker {
        file: spool.join("gone.txt").to_string_lossy().into_owned(),
        offset: 10,
        inode: 1,
        size: 10,
        mtime_ns: 0,
        done: true,
    };
    std::fs::write(&orphan, serde_json::to_vec(&t).expect("json")).expect("write");
    let ch = memory();
    let src = start(
        config(spool, "recursive = true\n"),
        Arc::new(ChannelDeliver(ch.clone())),
    );
    wait_until("both files completed", || {
        spool.join("sub/deeper/a.txt.COMPLETED").exists()
            && spool.join("top.txt.COMPLETED").exists()
    })
    .await;
    src.stop().await;
    let mut got = bodies(&drain(ch.as_ref()));
    got.sort();
    assert_eq!(got, ["deep", "top"]);
    assert!(!orphan.exists(), "the orphan tracker was removed");
}

/// A file whose name is legal but long (here 250 bytes, deleted once consumed; with
/// `recursive` a subdirectory's name adds to it) is consumed: its tracker's name must stay
/// under the file-system limit of 255 bytes (it failed after the first batch, leaving the file
/// in place and delivering that batch again at every restart).
#[tokio::test]
async fn a_file_with_a_long_name_is_consumed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path();
    let long = "n".repeat(250);
    std::fs::write(spool.join(&long), numbered(1, 5, "l")).expect("write");
    std::fs::create_dir(spool.join("sub")).expect("mkdir");
    let long2 = "m".repeat(240);
    std::fs::write(spool.join("sub").join(&long2), numbered(1, 3, "k")).expect("write");
    let ch = memory();
    let src = start(
        config(
            spool,
            "batch_size = 2\ndelete_policy = \"immediate\"\nrecursive = true\n",
        ),
        Arc::new(ChannelDeliver(ch.clone())),
    );
    let mut got = Vec::new();
    wait_until("both files consumed and deleted", || {
        got.extend(drain(ch.as_ref()));
        !spool.join(&long).exists() && !spool.join("sub").join(&long2).exists()
    })
    .await;
    src.stop().await;
    got.extend(drain(ch.as_ref()));
    let mut want = expected(1, 5, "l");
    want.extend(expected(1, 3, "k"));
    let mut b = bodies(&got);
    b.sort();
    want.sort();
    assert_eq!(b, want, "every line once");
}

/// An event the channel refuses for good (larger than the channel's max_event_size, though
/// within max_line_length) is not a consumed file: the file is left in place, not deleted
/// (delete_policy = "immediate" destroyed the only copy of that event), with an error naming
/// it; the other events of the file are committed and the next file is consumed.
#[tokio::test]
async fn a_file_with_an_event_the_channel_refuses_is_left_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path();
    let big = format!("ok1\n{}\nok2\n", "x".repeat(300));
    std::fs::write(spool.join("1.log"), &big).expect("write");
    std::fs::write(spool.join("2.log"), "next\n").expect("write");
    let log = Log::default();
    let _guard = log.capture();
    let ch = Arc::new(MemoryChannel::new(MemoryChannelConfig {
        max_event_size: 100,
        ..MemoryChannelConfig::default()
    }));
    let src = start(
        config(
            spool,
            "batch_size = 10\ndelete_policy = \"immediate\"\nmax_line_length = 1000\n",
        ),
        Arc::new(ChannelDeliver(ch.clone())),
    );
    wait_until("2.log consumed", || !spool.join("2.log").exists()).await;
    src.stop().await;
    assert_eq!(bodies(&drain(ch.as_ref())), ["ok1", "ok2", "next"]);
    assert!(
        spool.join("1.log").exists(),
        "the file holding the refused event was deleted"
    );
    let text = log.text();
    assert!(
        text.contains("1.log") && text.contains("refused"),
        "the error names the file: {text}"
    );
}

/// A file whose name is not UTF-8 cannot be matched against the patterns nor named in a
/// tracker: it is not consumed, and an error names it (it was skipped without a word), once.
#[tokio::test]
async fn a_file_whose_name_is_not_utf8_is_an_error_naming_it() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path();
    let odd = spool.join(std::ffi::OsStr::from_bytes(b"caf\xe9.log"));
    std::fs::write(&odd, "odd\n").expect("write");
    std::fs::write(spool.join("2.log"), "fine\n").expect("write");
    let log = Log::default();
    let _guard = log.capture();
    let ch = memory();
    let src = start(config(spool, ""), Arc::new(ChannelDeliver(ch.clone())));
    wait_until("2.log completed", || spool.join("2.log.COMPLETED").exists()).await;
    wait_until("an error naming the odd file", || {
        log.text().contains("caf\u{FFFD}.log")
    })
    .await;
    // More polls: the error is not repeated.
    tokio::time::sleep(Duration::from_millis(300)).await;
    src.stop().await;
    assert_eq!(bodies(&drain(ch.as_ref())), ["fine"]);
    assert!(odd.exists(), "left in place");
    assert_eq!(
        log.text().matches("caf\u{FFFD}.log").count(),
        1,
        "logged once"
    );
}
