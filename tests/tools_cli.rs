//! `tidegate verify`, `repair` and `inspect` as a user runs them: the real binary, exit codes
//! and `--json`.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use common::{cfg, data_dir, put_range, segments};
use tidegate::FileChannel;

/// Runs `tidegate ARGS` and returns its exit code, stdout and stderr.
fn tidegate<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .output()
        .expect("run tidegate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `tidegate ARGS` on the channel under `root`, named by its directories.
fn run(root: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    all.push("--checkpoint-dir".into());
    all.push(root.join("ckpt").into());
    all.push("--data-dirs".into());
    all.push(data_dir(root).into());
    tidegate(&all)
}

/// Runs `tidegate ARGS --config CONFIG --channel CHANNEL`.
fn run_config(config: &Path, channel: &str, args: &[&str]) -> (i32, String, String) {
    let mut all: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    all.push("--config".into());
    all.push(config.into());
    all.push("--channel".into());
    all.push(channel.into());
    tidegate(&all)
}

/// Flips one bit of the second event's body (of the six `put_range(0..6)` wrote).
fn damage_second_event(root: &Path) {
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
    damage_second_event(root);

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

#[test]
fn config_and_channel_name_the_channel_with_its_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let ch = FileChannel::open(cfg(root)).expect("open");
    put_range(&ch, 0..6);
    drop(ch);
    let config = root.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[channels.c1]\ntype = \"file\"\ncheckpoint_dir = {:?}\ndata_dirs = [{:?}]\n\
             recovery_mode = \"skip\"\nmax_event_size = \"8KiB\"\n\n\
             [channels.m1]\ntype = \"memory\"\n",
            root.join("ckpt"),
            data_dir(root)
        ),
    )
    .expect("write config");

    let (code, out, err) = run_config(&config, "c1", &["verify", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json(&out)["events_queued"], 6);

    // The channel's recovery_mode (skip) applies: inspect restores what skip mode would, where
    // the same channel named by its directories (strict by default) does not open.
    damage_second_event(root);
    let (code, out, err) = run_config(&config, "c1", &["inspect", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json(&out)["events_queued"], 5);
    let (code, _, err) = run(root, &["inspect", "--json"]);
    assert_eq!(code, 2, "strict by default: {err}");

    let (code, _, err) = run_config(&config, "m1", &["verify"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("memory channel") && err.contains("agent.toml") && err.contains("m1"),
        "{err}"
    );
    let (code, _, err) = run_config(&config, "nope", &["inspect"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no channel nope") && err.contains("agent.toml") && err.contains("c1, m1"),
        "{err}"
    );

    let broken = root.join("broken.toml");
    std::fs::write(&broken, "[channels.c1]\ntype = \"file\"\nbogus = 1\n").expect("write");
    let (code, _, err) = run_config(&broken, "c1", &["repair"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("broken.toml:") && err.contains("bogus"),
        "{err}"
    );
}

#[test]
fn verify_and_inspect_an_encrypted_channel_with_and_without_its_key() {
    use tidegate::at_rest::{EncryptionConfig, generate_key_file};
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let (k1, other) = (root.join("k1.key"), root.join("other.key"));
    generate_key_file(&k1).expect("key");
    generate_key_file(&other).expect("key");
    let ch = FileChannel::open(cfg(root).encryption(EncryptionConfig::new(1).key(1, &k1)))
        .expect("open");
    put_range(&ch, 0..6);
    drop(ch);
    let key1 = format!("1={}", k1.display());

    // CRC checks and replay need no key: verify passes and says the tags were not checked.
    let (code, out, err) = run(root, &["verify", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v = json(&out);
    assert_eq!(
        (
            &v["events_queued"],
            &v["encrypted_records"],
            &v["tags_checked"]
        ),
        (&6.into(), &6.into(), &false.into())
    );
    let (code, out, _) = run(root, &["verify"]);
    assert_eq!(code, 0);
    assert!(out.contains("tags not checked: no key given"), "{out}");
    let (code, out, _) = run(root, &["inspect", "--json"]);
    assert_eq!((code, &json(&out)["events_queued"]), (0, &6.into()));

    // With the key, every tag is checked.
    let (code, out, err) = run(root, &["verify", "--json", "--key", &key1]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json(&out)["tags_checked"], true);

    // The dump decodes events only with the key, and names the key it needs without it.
    let dump = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec!["inspect", "--dump", "--json"];
        args.extend_from_slice(extra);
        let (code, out, err) = run(root, &args);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .map(json)
            .filter(|l| l["kind"] == "put")
            .collect()
    };
    let puts = dump(&[]);
    assert_eq!(puts.len(), 6);
    assert!(
        puts.iter().all(|p| p["detail"]
            .as_str()
            .is_some_and(|d| d.contains("encrypted with key 1, which was not given"))),
        "{puts:?}"
    );
    let puts = dump(&["--key", &key1]);
    assert!(
        puts[1]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("i=1") && d.contains("encrypted with key 1")),
        "{puts:?}"
    );

    // A key that was not given, or the wrong key, is a clear error (exit 2) naming the key.
    let (code, _, err) = run(root, &["verify", "--key", &format!("2={}", k1.display())]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("key 1 was not given") && err.contains("--key 1=PATH"),
        "{err}"
    );
    let (code, _, err) = run(
        root,
        &["verify", "--key", &format!("1={}", other.display())],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("key 1") && err.contains("not the key they were written with"),
        "{err}"
    );
    let (code, _, err) = run(root, &["verify", "--key", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("ID=PATH"), "{err}");

    // A ciphertext byte changed and the CRCs recomputed: only the tag check finds it.
    let offset = puts[1]["offset"].as_u64().expect("offset");
    let seg = segments(&data_dir(root))
        .into_iter()
        .next()
        .expect("segment");
    let mut bytes = std::fs::read(&seg).expect("read");
    let at = offset as usize;
    bytes[at + tidegate::format::record::HEADER_LEN + 20] ^= 1;
    tidegate::format::record::reseal(&mut bytes[at..]).expect("reseal");
    std::fs::write(&seg, &bytes).expect("write");
    let (code, out, _) = run(root, &["verify", "--json"]);
    assert_eq!(code, 0, "the CRCs match: {out}");
    let (code, out, _) = run(root, &["verify", "--json", "--key", &key1]);
    assert_eq!(code, 1, "{out}");
    let v = json(&out);
    assert_eq!(v["problems"][0]["kind"], "damaged_records");
    assert_eq!(v["problems"][0]["offset"], offset);
}

#[test]
fn repair_an_encrypted_channel_without_its_key() {
    use tidegate::at_rest::{EncryptionConfig, generate_key_file};
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let k1 = root.join("k1.key");
    generate_key_file(&k1).expect("key");
    let enc = || cfg(root).encryption(EncryptionConfig::new(1).key(1, &k1));
    let ch = FileChannel::open(enc()).expect("open");
    put_range(&ch, 0..6);
    drop(ch);
    // The dump (no key needed for positions) says where the second event's record is; flip a
    // byte of its ciphertext without fixing the CRC: ordinary damage, found without a key.
    let (_, out, _) = run(root, &["inspect", "--dump", "--json"]);
    let offset = out
        .lines()
        .map(json)
        .filter(|l| l["kind"] == "put")
        .nth(1)
        .and_then(|l| l["offset"].as_u64())
        .expect("second put");
    let seg = segments(&data_dir(root))
        .into_iter()
        .next()
        .expect("segment");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .expect("open");
    let at = offset + 32 + 20;
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).expect("read");
    f.write_all_at(&[b[0] ^ 1], at).expect("write");
    drop(f);

    let (code, out, _) = run(root, &["verify", "--json"]);
    assert_eq!(code, 1, "{out}");
    let (code, out, err) = run(root, &["repair", "--json"]);
    assert_eq!(code, 1, "one committed event lost: {out}{err}");
    assert_eq!(json(&out)["events_restored"], 5);
    let (code, out, err) = run(root, &["verify", "--key", &format!("1={}", k1.display())]);
    assert_eq!(code, 0, "{out}{err}");

    let ch = FileChannel::open(enc()).expect("strict open after repair, with the key");
    assert_eq!(common::drain(&ch), vec![0, 2, 3, 4, 5]);
}
