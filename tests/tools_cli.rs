//! `tidegate verify`, `repair` and `inspect` as a user runs them: the real binary, exit codes
//! and `--json`.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use common::{cfg, data_dir, put_range, segments};
use tidegate::FileChannel;

fn run(root: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .arg("--checkpoint-dir")
        .arg(root.join("ckpt"))
        .arg("--data-dirs")
        .arg(data_dir(root))
        .output()
        .expect("run tidegate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn verify_repair_inspect_exit_codes_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let ch = FileChannel::open(cfg(root)).expect("open");
    put_range(&ch, 0..6);
    drop(ch);

    let (code, out, _) = run(root, &["verify", "--json"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json(&out)["events_queued"], 6);

    // A flipped bit in the second event's body.
    let seg = segments(&data_dir(root))
        .into_iter()
        .next()
        .expect("segment");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .expect("open");
    let at = 64 + 57 + 40;
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).expect("read");
    f.write_all_at(&[b[0] ^ 1], at).expect("write");
    drop(f);

    let (code, out, _) = run(root, &["verify", "--json"]);
    assert_eq!(code, 1, "damage exits 1: {out}");
    let v = json(&out);
    assert_eq!(v["damaged"], true);
    assert_eq!(v["problems"][0]["kind"], "damaged_records");
    assert_eq!(v["problems"][0]["offset"], 64 + 57);
    assert!(v["strict_open_error"].is_string());

    let (code, out, _) = run(root, &["inspect", "--json", "--skip-corrupt"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json(&out)["events_queued"], 5);

    let (code, out, _) = run(root, &["repair", "--json"]);
    assert_eq!(
        code, 1,
        "a committed event could not be saved: exit 1: {out}"
    );
    let r = json(&out);
    assert_eq!(
        (r["events_restored"].as_u64(), r["events_lost"].as_u64()),
        (Some(5), Some(1))
    );
    assert_eq!(r["quarantine_files"].as_array().map(Vec::len), Some(1));

    let (code, out, _) = run(root, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verdict:        ok"), "{out}");

    let (code, out, _) = run(root, &["inspect", "--dump", "--json"]);
    assert_eq!(code, 0);
    let lines: Vec<serde_json::Value> = out.lines().map(json).collect();
    assert_eq!(
        lines.iter().filter(|l| l["kind"] == "put").count(),
        5 + 1,
        "5 events and one inert record"
    );

    let ch = FileChannel::open(cfg(root)).expect("strict open after repair");
    let (code, _, err) = run(root, &["verify"]);
    assert_eq!(code, 2, "an open channel: exit 2");
    assert!(
        err.contains("is locked") && err.contains("refuse to run against an open channel"),
        "{err}"
    );
    drop(ch);
}
