//! The `taildir` and `spooldir` sources under `kill -9`: the agent (taildir + spooldir -> file
//! channel -> file_roll) is killed three times and restarted while one writer thread appends
//! numbered lines to a log it rotates (alternately by rename and by copy-truncate; the rotated
//! names match the group's pattern) and another drops numbered spool files. At the end every
//! number written reaches the output files (duplicates allowed), and every spool file was
//! renamed `.COMPLETED`.

#[path = "common/agent.rs"]
mod agent;

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agent::{Agent, WAIT, file_channel_to_files, free_port, wait_until};

/// Numbers with `prefix` found in complete lines of the output files.
fn seen(out: &Path, prefix: &str) -> BTreeSet<u64> {
    let mut seen = BTreeSet::new();
    let Ok(rd) = std::fs::read_dir(out) else {
        return seen;
    };
    for entry in rd.filter_map(Result::ok) {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            if let Some(n) = line.strip_prefix(prefix).and_then(|d| d.parse().ok()) {
                seen.insert(n);
            }
        }
    }
    seen
}

fn output_lines(out: &Path) -> usize {
    seen(out, "t-").len() + seen(out, "s-").len()
}

/// Appends `t-N` lines to `logs/app.log`, rotating every 400 lines (rename to `app.log.K`, or
/// copy to `app.log.K` and truncate); returns the count written when stopped.
fn tail_writer(logs: PathBuf, stop: Arc<AtomicBool>, written: Arc<AtomicU64>) {
    let log = logs.join("app.log");
    let mut n = 0u64;
    let mut rotations = 0;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("open log");
    while !stop.load(Ordering::SeqCst) {
        let chunk: String = (n..n + 10).map(|i| format!("t-{i:08}\n")).collect();
        f.write_all(chunk.as_bytes()).expect("append");
        n += 10;
        written.store(n, Ordering::SeqCst);
        if n.is_multiple_of(400) {
            rotations += 1;
            let rotated = logs.join(format!("app.log.{rotations}"));
            if rotations % 2 == 0 {
                std::fs::rename(&log, &rotated).expect("rename");
            } else {
                std::fs::copy(&log, &rotated).expect("copy");
                f.set_len(0).expect("truncate");
            }
            f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("reopen log");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Drops spool files of 100 `s-N` lines (written under a hidden name, then renamed in).
fn spool_writer(spool: PathBuf, stop: Arc<AtomicBool>, written: Arc<AtomicU64>) {
    let mut n = 0u64;
    let mut k = 0;
    while !stop.load(Ordering::SeqCst) {
        let text: String = (n..n + 100).map(|i| format!("s-{i:08}\n")).collect();
        let tmp = spool.join(format!(".incoming-{k}"));
        std::fs::write(&tmp, text).expect("write spool file");
        std::fs::rename(&tmp, spool.join(format!("f-{k:05}.txt"))).expect("rename in");
        n += 100;
        k += 1;
        written.store(n, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(60));
    }
}

#[test]
fn every_line_written_reaches_the_output_across_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (logs, spool, out) = (
        dir.path().join("logs"),
        dir.path().join("spool"),
        dir.path().join("out"),
    );
    std::fs::create_dir_all(&logs).expect("mkdir");
    std::fs::create_dir_all(&spool).expect("mkdir");
    let mon = free_port();
    let config = dir.path().join("agent.toml");
    let sources = format!(
        r#"[sources.tail]
type = "taildir"
channels = ["c1"]
position_file = "state/taildir.json"
batch_size = 20
poll_interval = "200ms"
[sources.tail.filegroups.f1]
path = "{logs}/app.log*"

[sources.spool]
type = "spooldir"
channels = ["c1"]
directory = "spool"
batch_size = 5
poll_delay = "100ms"
"#,
        logs = logs.display()
    );
    std::fs::write(&config, file_channel_to_files(mon, &sources)).expect("write config");

    let stop = Arc::new(AtomicBool::new(false));
    let (tail_n, spool_n) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let writers = [
        {
            let (l, s, w) = (logs.clone(), stop.clone(), tail_n.clone());
            std::thread::spawn(move || tail_writer(l, s, w))
        },
        {
            let (d, s, w) = (spool.clone(), stop.clone(), spool_n.clone());
            std::thread::spawn(move || spool_writer(d, s, w))
        },
    ];

    let mut agent = Agent::start(&config, dir.path());
    let mut pause = 100;
    for round in 0..3 {
        let before = output_lines(&out);
        wait_until("the agent delivers more lines", || {
            output_lines(&out) > before + 40
        });
        std::thread::sleep(Duration::from_millis(pause));
        pause += 150;
        agent.kill();
        eprintln!(
            "round {round}: killed; written t={} s={}",
            tail_n.load(Ordering::SeqCst),
            spool_n.load(Ordering::SeqCst)
        );
        agent = Agent::start(&config, dir.path());
    }
    let before = output_lines(&out);
    wait_until("lines after the last restart", || {
        output_lines(&out) > before + 40
    });
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().expect("writer");
    }
    let (tail_n, spool_n) = (
        tail_n.load(Ordering::SeqCst),
        spool_n.load(Ordering::SeqCst),
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let (t, s) = (seen(&out, "t-"), seen(&out, "s-"));
        let missing_t: Vec<u64> = (0..tail_n).filter(|i| !t.contains(i)).collect();
        let missing_s: Vec<u64> = (0..spool_n).filter(|i| !s.contains(i)).collect();
        if missing_t.is_empty() && missing_s.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {WAIT:?}: {} of {tail_n} tailed lines missing (first {:?}), {} of {spool_n} spooled lines missing (first {:?})\nlog:\n{}",
            missing_t.len(),
            &missing_t[..missing_t.len().min(10)],
            missing_s.len(),
            &missing_s[..missing_s.len().min(10)],
            agent.lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until("every spool file completed", || {
        std::fs::read_dir(&spool)
            .expect("spool dir")
            .filter_map(Result::ok)
            .filter(|e| e.path().is_file())
            .all(|e| e.file_name().to_string_lossy().ends_with(".COMPLETED"))
    });
    agent.stop();
    assert!(tail_n > 300 && spool_n > 100, "the writers made progress");
}
