//! The `taildir` source on real files in a temporary directory, delivering into a real memory
//! channel: file groups and headers, partial last lines, rotation by rename and by
//! copy-truncate, files deleted while open, long lines split or skipped, and a restart that
//! resumes exactly from the positions file.

mod components_common;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use components_common::{ChannelDeliver, Running, bodies, drain};
use tidegate::agent::sources::taildir::{self, TaildirConfig, load_positions};
use tidegate::{Event, MemoryChannel, MemoryChannelConfig};

const WAIT: Duration = Duration::from_secs(20);

fn memory() -> Arc<MemoryChannel> {
    Arc::new(MemoryChannel::new(MemoryChannelConfig::default()))
}

/// A taildir config from TOML (with a fast poll).
fn config(toml_text: &str) -> TaildirConfig {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("config: {e}\n{toml_text}"))
}

fn start(cfg: TaildirConfig, ch: &Arc<MemoryChannel>) -> Running {
    let source = taildir::build("t1", cfg).expect("build");
    Running::start(source, Arc::new(ChannelDeliver(ch.clone())))
}

/// Drains `ch` into `got` until `done(got)` holds (bounded by [`WAIT`]).
async fn collect_until(ch: &MemoryChannel, got: &mut Vec<Event>, done: impl Fn(&[Event]) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        got.extend(drain(ch));
        if done(got) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "condition not reached within {WAIT:?}; got {:?}",
            bodies(got)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn has(got: &[Event], body: &str) -> bool {
    got.iter().any(|e| e.body() == body.as_bytes())
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

fn numbered(from: u32, to: u32, prefix: &str) -> String {
    (from..=to).map(|i| format!("{prefix}{i}\n")).collect()
}

/// Bodies sorted, to compare as multisets.
fn sorted(got: &[Event]) -> Vec<String> {
    let mut b = bodies(got);
    b.sort();
    b
}

fn expected(from: u32, to: u32, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = (from..=to).map(|i| format!("{prefix}{i}")).collect();
    v.sort();
    v
}

/// Two groups (a glob with static headers, and directory + regex), a file that appears after
/// the start, the file header, and a last line that is emitted only once its newline arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_headers_new_files_and_partial_last_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).expect("mkdir");
    std::fs::create_dir_all(&b).expect("mkdir");
    append(&a.join("x.log"), "a1\na2\npart");
    append(&a.join("x.txt"), "not matched\n");
    let cfg = config(&format!(
        r#"
position_file = "{pos}"
poll_interval = "100ms"
file_header = true
[filegroups.f1]
path = "{a}/*.log"
headers = {{ topic = "app" }}
[filegroups.f2]
directory = "{b}"
regex = "^test-.*\\.log$"
"#,
        pos = dir.path().join("pos.json").display(),
        a = a.display(),
        b = b.display(),
    ));
    let ch = memory();
    let src = start(cfg, &ch);
    let mut got = Vec::new();
    collect_until(&ch, &mut got, |g| has(g, "a2")).await;
    // A file appearing later, in the second group.
    append(&b.join("test-1.log"), "b1\n");
    append(&b.join("other.log"), "not matched either\n");
    collect_until(&ch, &mut got, |g| has(g, "b1")).await;
    append(&a.join("x.log"), "ial\n");
    collect_until(&ch, &mut got, |g| has(g, "partial")).await;
    src.stop().await;
    got.extend(drain(ch.as_ref()));
    assert_eq!(
        sorted(&got),
        ["a1", "a2", "b1", "partial"],
        "exactly the complete lines of the matched files, the partial line once and whole"
    );
    let a1 = got.iter().find(|e| e.body() == b"a1").expect("a1");
    assert_eq!(a1.headers().get("topic").map(String::as_str), Some("app"));
    assert_eq!(
        a1.headers().get("file").map(String::as_str),
        Some(a.join("x.log").to_str().expect("utf-8"))
    );
    let b1 = got.iter().find(|e| e.body() == b"b1").expect("b1");
    assert_eq!(b1.headers().get("topic"), None, "f1's headers only on f1");
}

/// Rotation by rename: the renamed file (same inode, now unmatched) is read to its end,
/// including lines its writer appended after the rename; then the new file is followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_rename_reads_the_old_file_to_its_end_then_the_new_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    let cfg = config(&format!(
        "position_file = \"{}\"\npoll_interval = \"500ms\"\n[filegroups.f1]\npath = \"{}/*.log\"\n",
        dir.path().join("pos.json").display(),
        dir.path().display()
    ));
    let ch = memory();
    let src = start(cfg, &ch);
    let mut writer = File::create(&log).expect("create");
    writer
        .write_all(numbered(1, 5, "l").as_bytes())
        .expect("write");
    let mut got = Vec::new();
    collect_until(&ch, &mut got, |g| has(g, "l5")).await;
    std::fs::rename(&log, dir.path().join("app.log.1")).expect("rotate");
    // The writer has not reopened yet: these land in the rotated file.
    writer
        .write_all(numbered(6, 8, "l").as_bytes())
        .expect("write");
    drop(writer);
    append(&log, &numbered(9, 12, "l"));
    collect_until(&ch, &mut got, |g| has(g, "l8") && has(g, "l12")).await;
    src.stop().await;
    got.extend(drain(ch.as_ref()));
    assert_eq!(
        sorted(&got),
        expected(1, 12, "l"),
        "every line exactly once"
    );
}

/// Copy-truncate: the file shrinks below the position: it is read again from 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_truncate_starts_the_file_again_at_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    append(&log, &numbered(1, 20, "c"));
    let cfg = config(&format!(
        "position_file = \"{}\"\npoll_interval = \"100ms\"\n[filegroups.f1]\npath = \"{}\"\n",
        dir.path().join("pos.json").display(),
        log.display()
    ));
    let ch = memory();
    let src = start(cfg, &ch);
    let mut got = Vec::new();
    collect_until(&ch, &mut got, |g| has(g, "c20")).await;
    std::fs::copy(&log, dir.path().join("app.log.1")).expect("copy");
    OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("open")
        .set_len(0)
        .expect("truncate");
    append(&log, &numbered(21, 23, "c"));
    collect_until(&ch, &mut got, |g| has(g, "c23")).await;
    src.stop().await;
    got.extend(drain(ch.as_ref()));
    assert_eq!(
        sorted(&got),
        expected(1, 23, "c"),
        "the lines after the truncation were read from offset 0, each once"
    );
}

/// A file deleted while the source has it open: what its writer still appends is read from
/// the open handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_deleted_while_open_is_read_to_its_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    let cfg = config(&format!(
        "position_file = \"{}\"\npoll_interval = \"500ms\"\n[filegroups.f1]\npath = \"{}/*.log\"\n",
        dir.path().join("pos.json").display(),
        dir.path().display()
    ));
    let ch = memory();
    let src = start(cfg, &ch);
    let mut writer = File::create(&log).expect("create");
    writer
        .write_all(numbered(1, 3, "d").as_bytes())
        .expect("write");
    let mut got = Vec::new();
    collect_until(&ch, &mut got, |g| has(g, "d3")).await;
    std::fs::remove_file(&log).expect("delete");
    writer
        .write_all(numbered(4, 6, "d").as_bytes())
        .expect("write");
    collect_until(&ch, &mut got, |g| has(g, "d6")).await;
    src.stop().await;
    got.extend(drain(ch.as_ref()));
    assert_eq!(sorted(&got), expected(1, 6, "d"));
}

/// `long_lines = "split"` emits pieces of `max_line_length` bytes; `"skip"` drops the line,
/// counts it as rejected, and keeps its neighbours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_are_split_or_skipped() {
    for mode in ["split", "skip"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("app.log");
        append(&log, "short\nabcdefghijklmnopqrst\r\nnext\n");
        let cfg = config(&format!(
            "position_file = \"{}\"\npoll_interval = \"100ms\"\nmax_line_length = 8\nlong_lines = \"{mode}\"\n[filegroups.f1]\npath = \"{}\"\n",
            dir.path().join("pos.json").display(),
            log.display()
        ));
        let ch = memory();
        let src = start(cfg, &ch);
        let mut got = Vec::new();
        collect_until(&ch, &mut got, |g| has(g, "next")).await;
        let rejected = src.counters.rejected.load(Relaxed);
        src.stop().await;
        got.extend(drain(ch.as_ref()));
        if mode == "split" {
            assert_eq!(
                bodies(&got),
                ["short", "abcdefgh", "ijklmnop", "qrst", "next"],
                "split into pieces of 8 bytes, in order"
            );
            assert_eq!(rejected, 0);
        } else {
            assert_eq!(bodies(&got), ["short", "next"], "the long line dropped");
            assert_eq!(rejected, 1, "the skipped line is counted as rejected");
        }
    }
}

/// A clean stop and a start with the same positions file: the lines written while the source
/// was down are read, none twice, none lost; the positions file records the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_exactly_from_the_positions_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    let pos = dir.path().join("state/pos.json");
    let toml_text = format!(
        "position_file = \"{}\"\npoll_interval = \"100ms\"\nbatch_size = 7\n[filegroups.f1]\npath = \"{}\"\n",
        pos.display(),
        log.display()
    );
    append(&log, &numbered(1, 30, "r"));
    let ch = memory();
    let src = start(config(&toml_text), &ch);
    let mut got = Vec::new();
    collect_until(&ch, &mut got, |g| has(g, "r30")).await;
    src.stop().await;
    append(&log, &numbered(31, 50, "r"));
    append(&log, "half");
    let src = start(config(&toml_text), &ch);
    collect_until(&ch, &mut got, |g| has(g, "r50")).await;
    src.stop().await;
    got.extend(drain(ch.as_ref()));
    assert_eq!(sorted(&got), expected(1, 50, "r"), "no loss, no duplicate");
    let entries = load_positions(&pos).expect("positions");
    let size = std::fs::metadata(&log).expect("stat").len();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        entries[0].pos,
        size - 4,
        "the position is the start of the unfinished last line"
    );
}

/// `skip_to_end`: a file present at start with no recorded position starts at its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_to_end_starts_unrecorded_files_at_their_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    append(&log, &numbered(1, 5, "old"));
    let cfg = config(&format!(
        "position_file = \"{}\"\npoll_interval = \"100ms\"\nskip_to_end = true\n[filegroups.f1]\npath = \"{}\"\n",
        dir.path().join("pos.json").display(),
        log.display()
    ));
    let ch = memory();
    let src = start(cfg, &ch);
    // Wait until the source follows the file (it logs nothing we can see here): append until
    // a new line arrives.
    let mut got = Vec::new();
    let mut n = 0;
    let deadline = Instant::now() + WAIT;
    while !got.iter().any(|e: &Event| e.body().starts_with(b"new")) {
        assert!(Instant::now() < deadline, "no new line within {WAIT:?}");
        n += 1;
        append(&log, &format!("new{n}\n"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        got.extend(drain(ch.as_ref()));
    }
    src.stop().await;
    got.extend(drain(ch.as_ref()));
    assert!(
        !got.iter().any(|e| e.body().starts_with(b"old")),
        "the lines present at start were skipped: {:?}",
        bodies(&got)
    );
}

/// A file group with both forms (or neither) is refused with the key named.
#[test]
fn a_file_group_needs_exactly_one_form() {
    let cfg = config(
        "position_file = \"p.json\"\n[filegroups.f1]\npath = \"/x/*.log\"\ndirectory = \"/x\"\nregex = \"a\"\n",
    );
    let err = cfg.check().expect_err("both forms");
    assert_eq!(err.0, "filegroups.f1");
    assert!(err.1.contains("exactly one"), "{}", err.1);
    let cfg = config("position_file = \"p.json\"\n[filegroups.f2]\ndirectory = \"/x\"\n");
    assert!(matches!(cfg.check(), Err((k, _)) if k == "filegroups.f2"));
    let cfg =
        config("position_file = \"p.json\"\n[filegroups.f3]\ndirectory = \"/x\"\nregex = \"(\"\n");
    assert!(matches!(cfg.check(), Err((k, _)) if k == "filegroups.f3.regex"));
}

/// Lines the channel never accepted are not recorded as read: a source stopped while its
/// channel refuses everything, then started again with the same positions file, delivers
/// every line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_never_committed_are_read_again_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    let pos = dir.path().join("pos.json");
    let toml_text = format!(
        "position_file = \"{}\"\npoll_interval = \"100ms\"\nbatch_size = 4\n[filegroups.f1]\npath = \"{}\"\n",
        pos.display(),
        log.display()
    );
    append(&log, &numbered(1, 10, "u"));
    let src = taildir::build("t1", config(&toml_text)).expect("build");
    let src = Running::start(src, Arc::new(components_common::FullDeliver));
    let deadline = Instant::now() + WAIT;
    while src.counters.received.load(Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the source read nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    src.stop().await;
    let ch = memory();
    let src = start(config(&toml_text), &ch);
    let mut got = Vec::new();
    collect_until(&ch, &mut got, |g| has(g, "u10")).await;
    src.stop().await;
    got.extend(drain(ch.as_ref()));
    assert_eq!(
        sorted(&got),
        expected(1, 10, "u"),
        "nothing lost, nothing twice"
    );
}

/// In the agent's config, the checks name the full key: a file group with both forms, an
/// unknown key, a spooldir regex that does not compile.
#[test]
fn agent_config_errors_name_the_key() {
    use tidegate::agent::config::{load_config_table, parse_toml};
    let load = |sources: &str| {
        let text = format!(
            "[channels.c1]\ntype = \"memory\"\n[sinks.k1]\ntype = \"null\"\nchannel = \"c1\"\n{sources}"
        );
        let (table, origin) = parse_toml(&text, "agent.toml").expect("parses");
        load_config_table(table, origin)
    };
    let errs = load(
        "[sources.t1]\ntype = \"taildir\"\nchannels = [\"c1\"]\nposition_file = \"p.json\"\n[sources.t1.filegroups.f1]\npath = \"/x/*.log\"\ndirectory = \"/x\"\nregex = \"a\"\n",
    )
    .expect_err("both forms");
    assert_eq!(errs.0.len(), 1, "{errs}");
    assert_eq!(errs.0[0].key, "sources.t1.filegroups.f1");
    let errs = load(
        "[sources.t1]\ntype = \"taildir\"\nchannels = [\"c1\"]\nposition_file = \"p.json\"\nlong_lines = \"wrap\"\n[sources.t1.filegroups.f1]\npath = \"/x/*.log\"\n",
    )
    .expect_err("bad long_lines");
    assert_eq!(errs.0[0].key, "sources.t1.long_lines", "{errs}");
    let errs = load(
        "[sources.s1]\ntype = \"spooldir\"\nchannels = [\"c1\"]\ndirectory = \"/x\"\ninclude_pattern = \"(\"\n",
    )
    .expect_err("bad regex");
    assert_eq!(errs.0[0].key, "sources.s1.include_pattern", "{errs}");
    let errs =
        load("[sources.s1]\ntype = \"spooldir\"\nchannels = [\"c1\"]\n").expect_err("no directory");
    assert!(errs.to_string().contains("directory"), "{errs}");
    let ok = load(
        "[sources.t1]\ntype = \"taildir\"\nchannels = [\"c1\"]\nposition_file = \"p.json\"\n[sources.t1.filegroups.f1]\npath = \"/x/*.log\"\n[sources.s1]\ntype = \"spooldir\"\nchannels = [\"c1\"]\ndirectory = \"/x\"\n",
    );
    assert!(
        ok.is_ok(),
        "{}",
        ok.err().map(|e| e.to_string()).unwrap_or_default()
    );
}

/// With a poll interval of an hour, new lines still arrive: file-system events wake the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_system_events_wake_the_source_between_polls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    append(&log, "first\n");
    let cfg = config(&format!(
        "position_file = \"{}\"\npoll_interval = \"1h\"\n[filegroups.f1]\npath = \"{}/*.log\"\n",
        dir.path().join("pos.json").display(),
        dir.path().display()
    ));
    let ch = memory();
    let src = start(cfg, &ch);
    let mut got = Vec::new();
    collect_until(&ch, &mut got, |g| has(g, "first")).await;
    append(&log, "second\n");
    append(&dir.path().join("new.log"), "third\n");
    collect_until(&ch, &mut got, |g| has(g, "second") && has(g, "third")).await;
    src.stop().await;
}

/// A positions file that is not valid JSON stops the source with an error naming it (it does
/// not silently start every file over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_positions_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pos = dir.path().join("pos.json");
    std::fs::write(&pos, "[{\"inode\": 1, \"pos\":").expect("write");
    let cfg = config(&format!(
        "position_file = \"{}\"\n[filegroups.f1]\npath = \"{}/*.log\"\n",
        pos.display(),
        dir.path().display()
    ));
    let src = start(cfg, &memory());
    let res = tokio::time::timeout(WAIT, src.task)
        .await
        .expect("the source returns")
        .expect("task");
    let err = res.expect_err("a damaged positions file");
    assert!(err.to_string().contains("pos.json"), "{err}");
}

/// Rotation by rename while the source is stopped, to a name no pattern matches: at start the
/// recorded file is found by inode in its directory and read from its position to its end;
/// the new file is read from 0. Every line once, with the group's headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_renamed_away_while_stopped_is_read_to_its_end_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    let toml_text = format!(
        "position_file = \"{}\"\npoll_interval = \"100ms\"\n[filegroups.f1]\npath = \"{}/*.log\"\nheaders = {{ topic = \"app\" }}\n",
        dir.path().join("pos.json").display(),
        dir.path().display()
    );
    append(&log, &numbered(1, 5, "w"));
    let ch = memory();
    let src = start(config(&toml_text), &ch);
    let mut got = Vec::new();
    collect_until(&ch, &mut got, |g| has(g, "w5")).await;
    src.stop().await;
    append(&log, &numbered(6, 9, "w"));
    std::fs::rename(&log, dir.path().join("app.log.1")).expect("rotate");
    append(&log, &numbered(10, 12, "w"));
    let src = start(config(&toml_text), &ch);
    collect_until(&ch, &mut got, |g| has(g, "w9") && has(g, "w12")).await;
    src.stop().await;
    got.extend(drain(ch.as_ref()));
    assert_eq!(sorted(&got), expected(1, 12, "w"), "every line once");
    assert!(
        got.iter()
            .all(|e| e.headers().get("topic").map(String::as_str) == Some("app")),
        "the group's headers also on the renamed file's lines"
    );
}

/// `skip_to_end` and a restart: a file the source followed from its end but read no line of
/// yet is recorded at that position, so lines appended while the source was down (clean stop
/// here; a kill -9 is the same) are read after the restart, not skipped as "present at start".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_to_end_does_not_skip_lines_written_while_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    let pos = dir.path().join("pos.json");
    append(&log, &numbered(1, 3, "old"));
    let toml_text = format!(
        "position_file = \"{}\"\npoll_interval = \"100ms\"\nskip_to_end = true\n[filegroups.f1]\npath = \"{}\"\n",
        pos.display(),
        log.display()
    );
    let ch = memory();
    let src = start(config(&toml_text), &ch);
    // Give the source its first scan: the positions file appears (bounded; without it the
    // restart below shows the loss).
    let deadline = Instant::now() + Duration::from_secs(3);
    while !pos.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    src.stop().await;
    append(&log, &numbered(1, 4, "down"));
    let src = start(config(&toml_text), &ch);
    let mut got = Vec::new();
    collect_until(&ch, &mut got, |g| has(g, "down4")).await;
    src.stop().await;
    got.extend(drain(ch.as_ref()));
    assert_eq!(
        sorted(&got),
        expected(1, 4, "down"),
        "the lines written while stopped, once; the old ones skipped"
    );
}

/// The log lines of the current thread (this test runs the source on a current-thread runtime).
#[derive(Clone, Default)]
struct Log(Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A line the channel refuses for good (larger than its max_event_size, within
/// max_line_length) is dropped by the delivery (counted as rejected); the warning must say
/// which file and where, or nobody can find it again. Its neighbours are committed.
#[tokio::test]
async fn a_line_the_channel_refuses_is_logged_with_its_file_and_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_file = dir.path().join("app.log");
    append(&log_file, &format!("ok1\n{}\nok2\n", "x".repeat(300)));
    let log = Log::default();
    let sub = {
        let log = log.clone();
        tracing_subscriber::fmt()
            .with_writer(move || log.clone())
            .with_ansi(false)
            .finish()
    };
    let _guard = tracing::subscriber::set_default(sub);
    let ch = Arc::new(MemoryChannel::new(MemoryChannelConfig {
        max_event_size: 100,
        ..MemoryChannelConfig::default()
    }));
    let cfg = config(&format!(
        "position_file = \"{}\"\npoll_interval = \"100ms\"\n[filegroups.f1]\npath = \"{}\"\n",
        dir.path().join("pos.json").display(),
        log_file.display()
    ));
    let src = start(cfg, &ch);
    let mut got = Vec::new();
    collect_until(&ch, &mut got, |g| has(g, "ok2")).await;
    src.stop().await;
    assert_eq!(bodies(&got), ["ok1", "ok2"]);
    assert_eq!(src_rejected(&log), 1, "{}", log_text(&log));
    let text = log_text(&log);
    let named = text.lines().any(|l| {
        l.contains("refused") && l.contains(log_file.to_str().expect("utf-8")) && l.contains("0..")
    });
    assert!(named, "a warning names the file and the offsets: {text}");
}

fn log_text(log: &Log) -> String {
    String::from_utf8_lossy(&log.0.lock().expect("log")).into_owned()
}

fn src_rejected(log: &Log) -> usize {
    log_text(log).matches("event rejected").count()
}

/// Inode numbers repeat across file systems: two followed files on two devices that share an
/// inode number are two files (the second one was never read: files were keyed by inode
/// alone). Needs /dev/shm on another device than `/` and a readable regular file on `/` with the
/// inode number of a new file in /dev/shm (found with `find`); where there is none the test
/// says so and passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_on_two_devices_with_the_same_inode_number_are_both_followed() {
    use std::os::unix::fs::MetadataExt;
    let shm = std::path::PathBuf::from(format!("/dev/shm/tidegate-taildir-{}", std::process::id()));
    let dev_of = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    if dev_of(Path::new("/dev/shm")).is_none()
        || dev_of(Path::new("/dev/shm")) == dev_of(Path::new("/"))
    {
        eprintln!("no /dev/shm on its own device: nothing to check here");
        return;
    }
    std::fs::create_dir_all(&shm).expect("mkdir");
    let a = shm.join("a.log");
    append(&a, "on-shm\n");
    let ino = std::fs::metadata(&a).expect("stat").ino();
    let found = std::process::Command::new("find")
        .args([
            "/usr",
            "/root",
            "/opt",
            "-xdev",
            "-inum",
            &ino.to_string(),
            "-type",
            "f",
            "-readable",
            "-print",
            "-quit",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let other = Path::new(&found);
    if found.is_empty() || dev_of(other) != dev_of(Path::new("/")) {
        let _ = std::fs::remove_dir_all(&shm);
        eprintln!("no file on / with inode {ino}: nothing to check here");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&format!(
        "position_file = \"{}\"\npoll_interval = \"100ms\"\nbatch_size = 1000\nmax_line_length = \"1MiB\"\n[filegroups.f1]\npath = \"{}\"\n[filegroups.f2]\npath = \"{}\"\n",
        dir.path().join("pos.json").display(),
        found,
        a.display()
    ));
    let cfg_again = cfg.clone();
    let ch = memory();
    let src = start(cfg, &ch);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has(&got, "on-shm") && Instant::now() < deadline {
        got.extend(drain(ch.as_ref()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    src.stop().await;
    // A restart resumes both files at their own positions: only the new line.
    append(&a, "on-shm-2\n");
    let src = start(cfg_again, &ch);
    let mut again = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has(&again, "on-shm-2") && Instant::now() < deadline {
        again.extend(drain(ch.as_ref()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    src.stop().await;
    again.extend(drain(ch.as_ref()));
    let _ = std::fs::remove_dir_all(&shm);
    // (Lines of the other file the first run had not read yet may follow.)
    let shm_lines: Vec<String> = bodies(&again)
        .into_iter()
        .filter(|b| b.starts_with("on-shm"))
        .collect();
    assert_eq!(
        shm_lines,
        ["on-shm-2"],
        "after a restart, only the new line"
    );
    assert!(
        has(&got, "on-shm"),
        "{} shares inode {ino} with {found} on another device and was never read",
        a.display()
    );
    let entries = load_positions(&dir.path().join("pos.json")).expect("positions");
    assert_eq!(entries.len(), 2, "one position per file: {entries:?}");
}
