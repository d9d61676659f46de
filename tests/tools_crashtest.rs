//! `tidegate crashtest` as a user runs it: the real binary, a few iterations, `--json`.

use std::process::Command;

fn crashtest(args: &[&str]) -> (serde_json::Value, i32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["crashtest", "--dir"])
        .arg(dir.path())
        .args(args)
        .arg("--json")
        .output()
        .expect("run tidegate crashtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let leftovers = std::fs::read_dir(dir.path()).expect("read dir").count();
    assert_eq!(leftovers, 0, "a passing run removes its channels");
    (v, out.status.code().unwrap_or(-1))
}

#[test]
fn crashtest_reports_json_and_passes() {
    let (v, code) = crashtest(&["--iterations", "3", "--seed", "11"]);
    assert_eq!(code, 0, "{v}");
    for key in [
        "iterations",
        "acknowledged",
        "lost",
        "duplicates",
        "recovery_ms_p50",
        "recovery_ms_max",
    ] {
        assert!(v.get(key).is_some(), "no {key} in {v}");
    }
    assert_eq!(v["iterations"], 3);
    assert_eq!(v["lost"], 0);
    assert_eq!(v["passed"], true);
    assert_eq!(v["fsync"], "always");
    assert!(v["acknowledged"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert!(v["recovery_ms_max"].as_f64() >= v["recovery_ms_p50"].as_f64());
}

#[test]
fn crashtest_with_several_producers_and_consumers_and_no_fsync() {
    let (v, code) = crashtest(&[
        "--iterations",
        "2",
        "--producers",
        "3",
        "--consumers",
        "2",
        "--batch",
        "5",
        "--event-size",
        "64",
        "--fsync",
        "never",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        (v["iterations"].as_u64(), v["lost"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(v["fsync"], "never");
}

#[test]
fn crashtest_on_an_encrypted_and_compressed_channel() {
    let (v, code) = crashtest(&[
        "--iterations",
        "2",
        "--encrypt",
        "--compress",
        "lz4",
        "--event-size",
        "512",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        (v["iterations"].as_u64(), v["lost"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(
        (&v["encrypt"], &v["compression"]),
        (&true.into(), &"lz4".into())
    );
    assert!(v["acknowledged"].as_u64().is_some_and(|n| n > 0), "{v}");
}
