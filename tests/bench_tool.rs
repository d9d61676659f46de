//! `tidegate bench`, run as the real binary on small workloads: the JSON's documented fields
//! and the relations between them, the Markdown and SVG outputs, the sweep, the memory
//! channel, refusals of bad input, and a clean stop on Ctrl-C. No timed assertions: only counts
//! and relations that hold whatever the disk does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary, without the shared `disk-regime` script (1,000 syncs, 4 s in the throttled
/// regime): only the first test below runs it, when it is installed.
fn tidegate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tidegate"));
    c.args(["--log", "warn"])
        .env("TIDEGATE_DISK_REGIME", "none");
    c
}

fn bench(dir: &Path, extra: &[&str]) -> Output {
    bench_command(dir, extra)
        .output()
        .expect("running tidegate bench")
}

fn bench_command(dir: &Path, extra: &[&str]) -> Command {
    let mut c = tidegate();
    c.arg("bench")
        .arg("--dir")
        .arg(dir)
        .args(["--segment-size", "1048576", "--no-warm-up"])
        .args(extra);
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("reading the JSON report");
    serde_json::from_str(&text).expect("the JSON report parses")
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not an integer in {v}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Entries the benchmark left in `dir` (its work directories must be gone).
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("listing the benchmarked directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("tidegate-bench-") || n.starts_with(".tidegate"))
        })
        .collect()
}

/// Checks that `text` is one well-formed XML element tree rooted at `<svg>`: every start tag is
/// closed in order, attributes are quoted, nothing follows the root.
fn assert_well_formed_svg(text: &str) {
    let body = text.trim();
    let body = body.strip_prefix("<?xml").map_or(body, |rest| {
        rest.split_once("?>").expect("xml declaration").1.trim()
    });
    assert!(
        body.starts_with("<svg"),
        "does not start with <svg: {}",
        &body[..40.min(body.len())]
    );
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = body;
    let mut roots = 0;
    while let Some(start) = rest.find('<') {
        if stack.is_empty() {
            assert!(
                rest[..start].trim().is_empty(),
                "text outside the root element"
            );
        }
        let end = rest[start..].find('>').expect("an unterminated tag") + start;
        let tag = &rest[start + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop(),
                Some(name.trim()),
                "mismatched closing tag </{name}>"
            );
        } else if !tag.starts_with('!') && !tag.starts_with('?') {
            let name = tag
                .split(|c: char| c.is_whitespace() || c == '/')
                .next()
                .expect("a tag name");
            assert!(!name.is_empty(), "an empty tag name");
            assert_eq!(
                tag.matches('"').count() % 2,
                0,
                "unbalanced quotes in <{tag}>"
            );
            if stack.is_empty() {
                roots += 1;
            }
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        rest = &rest[end + 1..];
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    assert!(rest.trim().is_empty(), "text after the root element");
    assert_eq!(roots, 1, "one root element");
}

#[test]
fn json_markdown_and_svg_reports_hold_the_documented_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let (j, m, s) = (
        out.path().join("r.json"),
        out.path().join("r.md"),
        out.path().join("r.svg"),
    );
    let mut cmd = bench_command(
        dir.path(),
        &[
            "--events",
            "300",
            "--batch",
            "10",
            "--rounds",
            "3",
            "--json",
            j.to_str().expect("utf-8 path"),
            "--markdown",
            m.to_str().expect("utf-8 path"),
            "--svg",
            s.to_str().expect("utf-8 path"),
        ],
    );
    let tool = Path::new("/work/shared/tools/disk-regime");
    if tool.is_file() {
        cmd.env("TIDEGATE_DISK_REGIME", tool);
    }
    let o = cmd.output().expect("running tidegate bench");
    assert!(o.status.success(), "exit {:?}: {}", o.status, stderr(&o));
    let r = json(&j);
    // The disk regime the run saw, before and after, when the script is there.
    let regime = &r["disk_regime"][0];
    if tool.is_file() {
        assert_eq!(r["disk_regime_tool"], tool.to_str().expect("utf-8"));
        for when in ["before", "after"] {
            let line = regime[when].as_str().expect("a regime line");
            assert!(line.starts_with("regime="), "{line}");
        }
    } else {
        assert!(r["disk_regime_tool"].is_null() && regime["before"].is_null());
    }
    assert_eq!(r["tool"], "tidegate bench");
    assert_eq!(r["schema"], 1);
    assert_eq!(r["interrupted"], false);
    assert_eq!(u(&r, "events_per_phase"), 300);
    let configs = r["configurations"].as_array().expect("configurations");
    assert_eq!(configs.len(), 1);
    let c = &configs[0];
    assert!(c["error"].is_null(), "{}", c["error"]);
    assert_eq!(c["fsync"], "always");
    assert_eq!(u(c, "rounds_done"), 3);
    // Every event requested was put, taken, and carried end to end, in every round.
    for phase in ["put", "take", "end_to_end", "baseline"] {
        assert_eq!(u(&c[phase], "events"), 900, "{phase}");
    }
    // 30 put commits of 10 events per round, each timed.
    assert_eq!(u(&c["commit_latency_us"], "count"), 90);
    let lat = &c["commit_latency_us"];
    assert!(u(lat, "p50") <= u(lat, "p99") && u(lat, "p99") <= u(lat, "p99_9"));
    assert!(u(lat, "p99_9") <= u(lat, "max") && u(lat, "p50") >= 1);
    // ratio = events_per_sec / baseline_events_per_sec in each round; the summary ratio is their
    // median, and the summary rates are the medians of the rounds' rates.
    let rounds = c["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 3);
    let mut ratios: Vec<f64> = rounds
        .iter()
        .map(|rd| {
            let ratio = f(rd, "ratio");
            let expect = f(rd, "put_events_per_sec") / f(rd, "baseline_events_per_sec");
            assert!(close(ratio, expect), "{ratio} vs {expect}");
            ratio
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    assert!(close(f(c, "ratio"), ratios[1]));
    let mut puts: Vec<f64> = rounds
        .iter()
        .map(|rd| f(rd, "put_events_per_sec"))
        .collect();
    puts.sort_by(f64::total_cmp);
    assert!(close(f(c, "events_per_sec"), puts[1]));
    assert!(close(f(&c["put"]["events_per_sec"], "median"), puts[1]));
    assert!(close(f(c, "mb_per_sec"), puts[1] * 512.0 / 1e6));
    assert!(f(c, "baseline_events_per_sec") > 0.0);
    // One producer, fsync = always: one flush per commit, never more.
    let fpc = f(c, "fsyncs_per_commit");
    assert!(fpc > 0.0 && fpc <= 1.0, "fsyncs per commit {fpc}");
    assert!(f(&c["cpu_sec_per_million_events"], "median") > 0.0);
    assert!(u(c, "peak_rss_bytes") > 0);
    let regimes = &c["regimes"];
    assert_eq!(
        u(regimes, "fast") + u(regimes, "throttled") + u(regimes, "mixed"),
        3
    );
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );

    let md = std::fs::read_to_string(&m).expect("markdown");
    assert!(md.starts_with("## tidegate bench"), "{md}");
    let table: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(table.len(), 3, "header, separator, one row: {md}");
    let columns = table[0].matches('|').count();
    assert!(
        table.iter().all(|l| l.matches('|').count() == columns),
        "{md}"
    );
    assert!(table[2].contains("512 B x10 1p always"), "{md}");

    let svg = std::fs::read_to_string(&s).expect("svg");
    assert_well_formed_svg(&svg);
    assert!(
        svg.contains("512 B x10 1p always"),
        "the chart labels the configuration"
    );
    assert!(svg.contains("ratio to the raw baseline"));
}

#[test]
fn comma_lists_run_the_cross_product() {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = dir.path().join("sweep.json");
    let o = bench(
        dir.path(),
        &[
            "--events",
            "200",
            "--batch",
            "5,10",
            "--producers",
            "1,3",
            "--consumers",
            "2",
            "--rounds",
            "1",
            "--json",
            j.to_str().expect("utf-8 path"),
        ],
    );
    assert!(o.status.success(), "exit {:?}: {}", o.status, stderr(&o));
    let r = json(&j);
    let configs = r["configurations"].as_array().expect("configurations");
    let mut seen: Vec<(u64, u64)> = configs
        .iter()
        .map(|c| (u(c, "batch"), u(c, "producers")))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, [(5, 1), (5, 3), (10, 1), (10, 3)]);
    for c in configs {
        assert!(c["error"].is_null(), "{}", c["error"]);
        assert_eq!(u(c, "consumers"), 2);
        for phase in ["put", "take", "end_to_end"] {
            assert_eq!(u(&c[phase], "events"), 200, "{phase} of {c}");
        }
        // Group commit may share flushes, it never adds any.
        let fpc = f(c, "fsyncs_per_commit");
        assert!(fpc > 0.0 && fpc <= 1.0, "fsyncs per commit {fpc}");
    }
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn encryption_and_compression_are_benchmarked_as_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = dir.path().join("at_rest.json");
    let o = bench(
        dir.path(),
        &[
            "--events",
            "300",
            "--batch",
            "10",
            "--rounds",
            "1",
            "--encrypt",
            "--compress",
            "none,lz4",
            "--json",
            j.to_str().expect("utf-8 path"),
        ],
    );
    assert!(o.status.success(), "exit {:?}: {}", o.status, stderr(&o));
    let r = json(&j);
    let configs = r["configurations"].as_array().expect("configurations");
    let codecs: Vec<&str> = configs
        .iter()
        .map(|c| c["compression"].as_str().expect("compression"))
        .collect();
    assert_eq!(codecs, ["none", "lz4"]);
    for c in configs {
        assert!(c["error"].is_null(), "{}", c["error"]);
        assert_eq!(c["encrypt"], true);
        assert_eq!(u(&c["take"], "events"), 300);
    }
    assert!(
        leftovers(dir.path()).is_empty(),
        "the key file went with the work directory"
    );

    let o = tidegate()
        .args([
            "bench",
            "--channel",
            "memory",
            "--events",
            "10",
            "--encrypt",
        ])
        .output()
        .expect("running tidegate bench");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("file channel only"), "{}", stderr(&o));
}

#[test]
fn the_memory_channel_has_no_baseline_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = dir.path().join("mem.json");
    let o = tidegate()
        .args([
            "bench",
            "--channel",
            "memory",
            "--events",
            "1000",
            "--rounds",
            "2",
        ])
        .arg("--json")
        .arg(&j)
        .output()
        .expect("running tidegate bench");
    assert!(o.status.success(), "exit {:?}: {}", o.status, stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("no baseline"), "{stdout}");
    let r = json(&j);
    let c = &r["configurations"][0];
    assert_eq!(c["channel"], "memory");
    assert!(c["ratio"].is_null() && c["baseline_events_per_sec"].is_null());
    assert!(c["fsyncs_per_commit"].is_null());
    assert!(
        c["note"]
            .as_str()
            .is_some_and(|n| n.contains("no baseline"))
    );
    assert_eq!(u(&c["put"], "events"), 2000);
    assert!(f(c, "events_per_sec") > 0.0);
}

#[test]
fn bad_input_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-dir");
    let o = bench(&missing, &["--events", "100"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("does not exist") && e.contains("no-such-dir"),
        "{e}"
    );

    let o = bench(dir.path(), &["--events", "100", "--batch", "100,0"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("--batch") && e.contains("0 is not allowed"),
        "{e}"
    );

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").expect("write");
    let o = bench(&file, &["--events", "100"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a directory"), "{}", stderr(&o));

    // More than the disk holds: refused up front, with the sizes.
    let o = bench(dir.path(), &["--events", "100000000000000"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("too little free space"),
        "{}",
        stderr(&o)
    );

    let o = bench(
        dir.path(),
        &["--events", "100", "--json", "/no/such/dir/r.json"],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--json"), "{}", stderr(&o));

    // Nothing ran: no work directory, no output.
    assert!(leftovers(dir.path()).is_empty());
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn ctrl_c_stops_cleanly_reports_and_removes_its_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = dir.path().join("int.json");
    let mut child = tidegate()
        .arg("bench")
        .arg("--dir")
        .arg(dir.path())
        .args([
            "--segment-size",
            "1048576",
            "--no-warm-up",
            "--duration",
            "60s",
            "--fsync",
            "never",
            "--rounds",
            "100",
        ])
        .arg("--json")
        .arg(&j)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning tidegate bench");
    // Wait (bounded) until the run has its work directory, then interrupt it during the first
    // round's 60-second put phase.
    let deadline = Instant::now() + Duration::from_secs(60);
    while leftovers(dir.path()).is_empty() {
        assert!(Instant::now() < deadline, "the run never started");
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "exited early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("try_wait").is_none() {
        assert!(Instant::now() < deadline, "Ctrl-C did not stop the run");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().expect("output");
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("INTERRUPTED"));
    let r = json(&j);
    assert_eq!(r["interrupted"], true);
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}
