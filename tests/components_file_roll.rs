//! The `file_roll` sink: serializers, rolling by size and time, and what a crash leaves.
//!
//! The crash test re-runs this binary as a child (`--ignored --exact file_roll_child`) that
//! delivers numbered batches and prints each acknowledged one; the parent kills it with SIGKILL
//! after a random number of acknowledgements, starts a sink on the directory (which repairs what
//! the child left in progress), and checks that every finished file is whole lines, every line
//! a whole event, and every acknowledged event is there. `TIDEGATE_FILE_ROLL_CRASHES` sets the
//! number of kills (default 4).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tidegate::Event;
use tidegate::agent::component::Sink;
use tidegate::agent::sinks::file_roll::{FileRollSink, FileRollSinkConfig, Serializer};
use tidegate::agent::units::{ByteSize, HumanDuration};
use tidegate::agent::wire;

fn sink(
    dir: &Path,
    serializer: Serializer,
    roll_size: u64,
    roll_interval: Duration,
) -> FileRollSink {
    FileRollSink::new(
        "k1",
        FileRollSinkConfig {
            directory: dir.to_path_buf(),
            roll_interval: HumanDuration(roll_interval),
            roll_size: ByteSize(roll_size),
            serializer,
            file_prefix: "events".into(),
        },
    )
    .expect("sink")
}

/// (finished files, in-progress files), sorted by name; hidden files (the sink's
/// `.<prefix>.lock`) are not output.
fn files(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    all.sort();
    all.into_iter()
        .partition(|p| !p.to_string_lossy().ends_with(".inprogress"))
}

fn read(p: &Path) -> String {
    String::from_utf8(std::fs::read(p).expect("read")).expect("UTF-8")
}

/// Every finished file's contents, in creation order (the names sort by time, then number).
fn finished_text(dir: &Path) -> String {
    let (mut done, _) = files(dir);
    done.sort_by_key(|p| {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        let mut parts = name.rsplitn(3, '-');
        let n: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let ms: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        (ms, n)
    });
    done.iter().map(|p| read(p)).collect()
}

fn ev(s: &str) -> Event {
    Event::new(s.as_bytes().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_json_lines_and_rolling_by_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut k = sink(dir.path(), Serializer::Text, 10, Duration::ZERO);
    k.deliver(&[ev("abc"), ev("de")]).await.expect("deliver");
    let (done, open) = files(dir.path());
    assert!(done.is_empty(), "7 bytes < 10: not rolled");
    assert_eq!(open.len(), 1);
    assert_eq!(read(&open[0]), "abc\nde\n", "synced before Ok");
    k.deliver(&[ev("fgh")]).await.expect("deliver");
    let (done, open) = files(dir.path());
    assert_eq!((done.len(), open.len()), (1, 0), "11 bytes >= 10: rolled");
    k.deliver(&[]).await.expect("an empty batch");
    assert_eq!(files(dir.path()).1.len(), 0, "an empty batch makes no file");
    k.deliver(&[ev("i")]).await.expect("deliver");
    k.stop().await.expect("stop");
    let (done, open) = files(dir.path());
    assert_eq!(
        (done.len(), open.len()),
        (2, 0),
        "stop finishes the open file"
    );
    assert_eq!(finished_text(dir.path()), "abc\nde\nfgh\ni\n");

    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("out/json");
    let mut k = sink(&dir, Serializer::Json, 0, Duration::ZERO);
    let batch = [
        ev("a\nb").with_header("h", "1"),
        Event::new(vec![0xff, 0x0a]),
    ];
    k.deliver(&batch)
        .await
        .expect("deliver (creating the directories)");
    k.stop().await.expect("stop");
    let text = finished_text(&dir);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, want) in lines.iter().zip(&batch) {
        let got = wire::decode_json(format!("[{line}]").as_bytes()).expect("a JSON event");
        assert_eq!(&got, std::slice::from_ref(want));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_by_time_finishes_an_idle_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut k = sink(dir.path(), Serializer::Text, 0, Duration::from_millis(200));
    k.deliver(&[ev("a")]).await.expect("deliver");
    let deadline = Instant::now() + Duration::from_secs(20);
    while files(dir.path()).0.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the idle file was not rolled within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(files(dir.path()).1.len(), 0);
    k.deliver(&[ev("b")]).await.expect("deliver");
    assert_eq!(
        files(dir.path()).1.len(),
        1,
        "a new file for the next event"
    );
    k.stop().await.expect("stop");
    assert_eq!(finished_text(dir.path()), "a\nb\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_in_progress_file_is_cut_to_its_last_line_and_finished() {
    let dir = tempfile::tempdir().expect("tempdir");
    // What a crash mid-write leaves: two whole lines and part of a third.
    std::fs::write(dir.path().join("events-1000-1.inprogress"), "one\ntwo\nthr").expect("write");
    // A crash with no complete line at all.
    std::fs::write(dir.path().join("events-1000-2.inprogress"), "partial").expect("write");
    // Another sink's file is left alone.
    std::fs::write(dir.path().join("other-1000-1.inprogress"), "x").expect("write");

    let mut k = sink(dir.path(), Serializer::Text, 0, Duration::ZERO);
    k.deliver(&[ev("three")]).await.expect("deliver");
    k.stop().await.expect("stop");
    let (done, open) = files(dir.path());
    let names: Vec<String> = done
        .iter()
        .chain(&open)
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"events-1000-1".to_string()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("events-1000-2")),
        "{names:?}"
    );
    assert_eq!(open, [dir.path().join("other-1000-1.inprogress")]);
    assert_eq!(read(&dir.path().join("events-1000-1")), "one\ntwo\n");
    assert_eq!(finished_text(dir.path()), "one\ntwo\nthree\n");
}

const ENV_DIR: &str = "TIDEGATE_FILE_ROLL_CHILD_DIR";
const ENV_START: &str = "TIDEGATE_FILE_ROLL_CHILD_START";
const TAG: &str = "@file-roll-ack@ ";

fn crash_event(id: u64) -> Event {
    // Bodies of a few KiB, so a kill often lands inside a write.
    let len = 500 + (id * 7919) % 6000;
    Event::new(vec![b'a' + (id % 26) as u8; len as usize]).with_header("id", id.to_string())
}

/// The child: delivers batches of 20 events until killed (or 30 s pass), printing each
/// acknowledged batch's first id.
#[test]
#[ignore = "the child of file_roll_survives_kills; runs only with its environment"]
fn file_roll_child() {
    let (Ok(dir), Ok(start)) = (std::env::var(ENV_DIR), std::env::var(ENV_START)) else {
        return;
    };
    let start: u64 = start.parse().expect("start id");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut k = sink(Path::new(&dir), Serializer::Json, 256 << 10, Duration::ZERO);
        let began = Instant::now();
        let mut id = start;
        while began.elapsed() < Duration::from_secs(30) {
            let batch: Vec<Event> = (id..id + 20).map(crash_event).collect();
            k.deliver(&batch).await.expect("deliver");
            println!("{TAG}{id}");
            id += 20;
        }
    });
}

#[test]
fn file_roll_survives_kills() {
    let crashes: usize = std::env::var("TIDEGATE_FILE_ROLL_CRASHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut rng = seed;
    let mut acked = BTreeSet::new();
    let mut start = 0u64;
    let mut torn = 0;
    for round in 0..crashes {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .args(["--ignored", "--exact", "file_roll_child", "--nocapture"])
            .env(ENV_DIR, dir.path())
            .env(ENV_START, start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let kill_after = 1 + rng % 40;
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        while seen < kill_after {
            let Some(Ok(line)) = lines.next() else {
                break;
            };
            if let Some(id) = line.strip_prefix(TAG) {
                let id: u64 = id.trim().parse().expect("acked id");
                acked.extend(id..id + 20);
                seen += 1;
            }
        }
        // Somewhere inside the next batch: serializing, writing or syncing it.
        std::thread::sleep(Duration::from_micros(rng % 20_000));
        child.kill().expect("kill");
        // Whatever the child acknowledged before it died counts too.
        for line in lines.map_while(Result::ok) {
            if let Some(id) = line.strip_prefix(TAG) {
                let id: u64 = id.trim().parse().expect("acked id");
                acked.extend(id..id + 20);
            }
        }
        let status = child.wait().expect("wait");
        assert!(
            !status.success(),
            "round {round}: the child ended by itself (seed {seed})"
        );
        start = acked.last().map_or(0, |l| l + 1) + 1000;

        let (_, left) = files(dir.path());
        torn += left
            .iter()
            .filter(|p| {
                std::fs::read(p)
                    .expect("read")
                    .last()
                    .is_some_and(|&b| b != b'\n')
            })
            .count();
        // A new sink repairs what the child left.
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let mut k = sink(dir.path(), Serializer::Json, 256 << 10, Duration::ZERO);
            k.deliver(&[]).await.expect("repair");
            k.stop().await.expect("stop");
        });
        let (done, open) = files(dir.path());
        assert!(open.is_empty(), "round {round}: {open:?} left in progress");
        let mut found = BTreeSet::new();
        for file in &done {
            let bytes = std::fs::read(file).expect("read");
            assert_eq!(
                bytes.last(),
                Some(&b'\n'),
                "round {round}: {} ends inside a line (seed {seed})",
                file.display()
            );
            for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let mut json = b"[".to_vec();
                json.extend_from_slice(line);
                json.push(b']');
                let events = wire::decode_json(&json).unwrap_or_else(|e| {
                    panic!(
                        "round {round}: a broken line in {}: {e} (seed {seed})",
                        file.display()
                    )
                });
                for e in events {
                    let id: u64 = e.headers()["id"].parse().expect("id header");
                    assert_eq!(e, crash_event(id), "round {round}: event {id} damaged");
                    found.insert(id);
                }
            }
        }
        let missing: Vec<&u64> = acked.difference(&found).take(5).collect();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged events missing: {missing:?}... (seed {seed})"
        );
    }
    assert!(!acked.is_empty(), "the children acknowledged something");
    eprintln!("{crashes} kills, {torn} left a torn line to repair");
}
