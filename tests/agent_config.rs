//! `tidegate validate` and the config loader: bad configs are refused with every problem named
//! by key and line; good ones print their topology.

use std::path::Path;
use std::process::Command;

use tidegate::agent::config::{load_config_file, load_config_table, parse_toml};

const BIN: &str = env!("CARGO_BIN_EXE_tidegate");

/// Runs `tidegate validate` on `text`; returns (exit code, stdout, stderr).
fn validate(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .expect("run validate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts that validation fails with exit 78 and names `key` on `line` (among others).
fn assert_rejects(text: &str, line: usize, key: &str, words: &str) {
    let (code, _, err) = validate(text);
    assert_eq!(code, 78, "{err}");
    let want = format!("agent.toml:{line}: `{key}`:");
    let hit = err.lines().find(|l| l.contains(&want));
    assert!(hit.is_some(), "no problem naming {want:?} in:\n{err}");
    assert!(
        hit.is_some_and(|l| l.contains(words)),
        "problem at {want} does not say {words:?}:\n{err}"
    );
}

const CHANNEL: &str = r#"[channels.c1]
type = "memory"
transaction_capacity = 100
"#;

#[test]
fn batch_size_above_transaction_capacity_is_refused() {
    let cfg =
        format!("{CHANNEL}\n[sinks.k1]\ntype = \"null\"\nchannel = \"c1\"\nbatch_size = 500\n");
    assert_rejects(&cfg, 8, "sinks.k1.batch_size", "FLUME-3107");
    // The default batch size (100) against a smaller transaction capacity is refused too,
    // pointing at the sink's table.
    let cfg = "[channels.c1]\ntype = \"memory\"\ntransaction_capacity = 10\n\n[sinks.k1]\ntype = \"null\"\nchannel = \"c1\"\n";
    assert_rejects(cfg, 5, "sinks.k1.batch_size", "(the default)");
}

#[test]
fn unknown_keys_are_refused_at_every_level() {
    assert_rejects(
        &format!("[agent]\nnmae = \"x\"\n{CHANNEL}"),
        2,
        "agent.nmae",
        "unknown field",
    );
    assert_rejects(
        &format!("{CHANNEL}keep_alive_ms = 3\n"),
        4,
        "channels.c1.keep_alive_ms",
        "unknown field",
    );
    assert_rejects(
        &format!("{CHANNEL}\n[sinks.k1]\ntype = \"logger\"\nchannel = \"c1\"\nbatch = 5\n"),
        8,
        "sinks.k1.batch",
        "unknown field",
    );
    assert_rejects(
        &format!("{CHANNEL}\n[metrics]\nbind = \"x\"\n"),
        5,
        "metrics",
        "unknown key",
    );
}

#[test]
fn references_to_missing_components_are_refused() {
    let cfg = format!(
        "{CHANNEL}\n[sources.r1]\ntype = \"seq\"\nchannels = [\"c1\", \"c2\"]\nbatch_size = 10\n\n[sinks.k1]\ntype = \"null\"\nchannel = \"c9\"\n\n[sink_groups.g1]\nsinks = [\"k1\", \"k7\"]\nprocessor = {{ type = \"failover\" }}\n"
    );
    assert_rejects(&cfg, 7, "sources.r1.channels[1]", "no channel named \"c2\"");
    assert_rejects(&cfg, 12, "sinks.k1.channel", "no channel named \"c9\"");
    assert_rejects(&cfg, 15, "sink_groups.g1.sinks[1]", "no sink named \"k7\"");
}

#[test]
fn a_sink_in_two_groups_is_refused() {
    let cfg = format!(
        "{CHANNEL}\n[sinks.k1]\ntype = \"null\"\nchannel = \"c1\"\n\n[sinks.k2]\ntype = \"null\"\nchannel = \"c1\"\n\n[sink_groups.g1]\nsinks = [\"k1\", \"k2\"]\nprocessor = {{ type = \"failover\" }}\n\n[sink_groups.g2]\nsinks = [\"k2\"]\nprocessor = {{ type = \"load_balance\", selector = \"random\" }}\n"
    );
    assert_rejects(
        &cfg,
        18,
        "sink_groups.g2.sinks[0]",
        "already in sink group g1",
    );
}

#[test]
fn bad_values_name_their_key_and_line() {
    let file = |extra: &str| {
        format!(
            "[channels.f1]\ntype = \"file\"\ncheckpoint_dir = \"ck\"\ndata_dirs = [\"data\"]\n{extra}\n"
        )
    };
    assert_rejects(
        &file("keep_alive = \"3 parsecs\""),
        5,
        "channels.f1.keep_alive",
        "invalid duration",
    );
    assert_rejects(
        &file("max_event_size = \"12XB\""),
        5,
        "channels.f1.max_event_size",
        "invalid size",
    );
    assert_rejects(
        &file("fsync = \"sometimes\""),
        5,
        "channels.f1.fsync",
        "unknown variant",
    );
    assert_rejects(
        &file("fsync_interval = \"1s\""),
        5,
        "channels.f1.fsync_interval",
        "interval",
    );
    assert_rejects(
        &file("max_segment_size = \"1KiB\""),
        5,
        "channels.f1.max_segment_size",
        "below the minimum",
    );
    assert_rejects(
        &format!("{CHANNEL}\n[monitoring]\nbind = \"localhost\"\n"),
        6,
        "monitoring.bind",
        "not an address",
    );
    let (code, _, err) = validate("[channels.c1\ntype = 1\n");
    assert_eq!(code, 78);
    assert!(
        err.contains("agent.toml:1:") && err.contains("not valid TOML"),
        "{err}"
    );
}

#[test]
fn every_problem_is_listed_not_just_the_first() {
    let cfg = format!(
        "[agent]\nshutdown_timeout = \"soon\"\n{CHANNEL}\n[sinks.k1]\ntype = \"no_such_type\"\nchannel = \"c1\"\n\n[sinks.k2]\ntype = \"null\"\nchannel = \"nope\"\n"
    );
    let (code, _, err) = validate(&cfg);
    assert_eq!(code, 78);
    for want in [
        "agent.toml:2: `agent.shutdown_timeout`",
        "agent.toml:8: `sinks.k1.type`: unknown sink type \"no_such_type\"",
        "agent.toml:13: `sinks.k2.channel`",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn a_good_config_prints_its_topology() {
    let cfg = r#"[agent]
name = "a1"
shutdown_timeout = "10s"

[monitoring]
bind = "127.0.0.1:41414"

[channels.c1]
type = "file"
checkpoint_dir = "tidegate-data/c1/checkpoint"
data_dirs = ["tidegate-data/c1/data"]
capacity = 100000
transaction_capacity = 1000
fsync = "interval"
fsync_interval = "500ms"

[channels.m1]
type = "memory"
capacity = 1000

[sources.r1]
type = "stdin"
channels = ["c1", "m1"]
selector = { type = "replicating", optional = ["m1"] }

[sinks.k1]
type = "logger"
channel = "c1"
max_body_length = 32

[sinks.k2]
type = "null"
channel = "c1"

[sinks.k3]
type = "null"
channel = "m1"

[sink_groups.g1]
sinks = ["k1", "k2"]
processor = { type = "failover", priorities = { k1 = 10, k2 = 5 }, max_penalty = "30s" }
"#;
    let (code, out, err) = validate(cfg);
    assert_eq!(code, 0, "{err}");
    for want in [
        "agent a1",
        "channel c1: file",
        "fsync Interval(500ms)",
        "source r1 (stdin) -> c1, m1 [replicating, optional m1",
        "sink k1 (logger) <- c1 [batch_size 100, group g1]",
        "sink group g1: k1, k2 [failover",
        "config OK",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn validate_warns_about_a_channel_without_a_sink() {
    let (code, out, err) = validate(&format!(
        "{CHANNEL}\n[sources.r1]\ntype = \"seq\"\nchannels = [\"c1\"]\nbatch_size = 10\n"
    ));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("warning: channel c1 has no sink"), "{out}");
    assert!(!out.contains("has no source"), "{out}");

    let (code, out, err) = validate(&format!(
        "{CHANNEL}\n[channels.m2]\ntype = \"memory\"\n\n[sinks.k1]\ntype = \"null\"\nchannel = \"c1\"\n\n[sinks.k2]\ntype = \"null\"\nchannel = \"m2\"\n\n[sink_groups.g1]\nsinks = [\"k1\", \"k2\"]\nprocessor = {{ type = \"failover\" }}\n"
    ));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("warning: the members of failover group g1 drain different channels (c1, m2)"),
        "{out}"
    );
    assert!(out.contains("warning: channel m2 has no source"), "{out}");
}

#[test]
fn the_offline_tools_get_a_file_channel_config_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "[channels.c1]\ntype = \"file\"\ncheckpoint_dir = \"ck\"\ndata_dirs = [\"d1\", \"d2\"]\ncapacity = 77\n\n[channels.m1]\ntype = \"memory\"\n",
    )
    .expect("write");
    let cfg = load_config_file(&path).expect("loads");
    let fc = cfg.file_channel("c1").expect("c1 is a file channel");
    assert_eq!(fc.checkpoint_dir(), Path::new("ck"));
    assert_eq!(fc.data_dirs().len(), 2);
    assert!(cfg.file_channel("m1").is_err_and(|e| e.contains("memory")));
    assert!(
        cfg.file_channel("zz")
            .is_err_and(|e| e.contains("no channel zz"))
    );
}

#[test]
fn a_table_from_elsewhere_reports_lines_from_its_origin() {
    // The Flume import hands over a table and the properties line of each key.
    let (table, mut origin) = parse_toml(
        "[channels.c1]\ntype = \"memory\"\ntransaction_capacity = 5\n[sinks.k1]\ntype = \"null\"\nchannel = \"c1\"\nbatch_size = 10\n",
        "flume.properties",
    )
    .expect("parses");
    origin.lines.insert("sinks.k1.batch_size".into(), 42);
    let errs = load_config_table(table, origin).expect_err("batch too large");
    assert_eq!(errs.0.len(), 1);
    assert_eq!(errs.0[0].line, Some(42));
    assert_eq!(errs.0[0].file, "flume.properties");
    assert_eq!(errs.0[0].key, "sinks.k1.batch_size");
}

#[test]

fn the_quickstart_example_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.toml");
    let cfg = load_config_file(&path);
    assert!(
        cfg.is_ok(),
        "{}",
        cfg.err().map(|e| e.to_string()).unwrap_or_default()
    );
}

#[test]
fn the_stdin_example_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/stdin.toml");
    let cfg = load_config_file(&path);
    assert!(
        cfg.is_ok(),
        "{}",
        cfg.err().map(|e| e.to_string()).unwrap_or_default()
    );
}

#[test]
fn the_agent_refuses_to_start_on_a_bad_config_with_the_same_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        format!("{CHANNEL}\n[sinks.k1]\ntype = \"null\"\nchannel = \"c1\"\nbatch_size = 500\n"),
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["agent", "--config"])
        .arg(&path)
        .output()
        .expect("run agent");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("agent.toml:8: `sinks.k1.batch_size`"), "{err}");
}

#[test]
fn at_rest_keys_open_an_encrypted_compressed_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for k in ["k1.key", "k2.key"] {
        tidegate::at_rest::generate_key_file(&root.join(k)).expect("key file");
    }
    let write = |name: &str, at_rest: &str| {
        let path = root.join(name);
        std::fs::write(
            &path,
            format!(
                "[channels.c1]\ntype = \"file\"\ncheckpoint_dir = {:?}\ndata_dirs = [{:?}]\n\
                 minimum_required_space = \"1MiB\"\nmax_segment_size = \"64KiB\"\nmax_event_size = \"8KiB\"\n{at_rest}",
                root.join("ckpt"),
                root.join("data")
            ),
        )
        .expect("write config");
        path
    };
    let keys = format!(
        "encryption = {{ active_key = 2, keys = {{ 1 = {:?}, 2 = {:?} }} }}\n",
        root.join("k1.key"),
        root.join("k2.key")
    );
    let good = write(
        "good.toml",
        &format!("{keys}compression = \"lz4\"\ncompression_threshold = \"256B\"\n"),
    );
    let cfg = load_config_file(&good)
        .expect("loads")
        .file_channel("c1")
        .expect("c1");
    let body = "a log line that repeats itself, ".repeat(20);
    let ch = tidegate::FileChannel::open(cfg.clone()).expect("open");
    let mut tx = ch.transaction();
    tx.put(tidegate::Event::new(body.clone().into_bytes()))
        .expect("put");
    tx.commit().expect("commit");
    let stats = ch.stats();
    assert_eq!((stats.events_encrypted, stats.events_compressed), (1, 1));
    ch.close().expect("close");
    let mut on_disk = Vec::new();
    for e in std::fs::read_dir(root.join("data")).expect("data dir") {
        on_disk.extend(std::fs::read(e.expect("entry").path()).expect("read"));
    }
    assert!(
        !on_disk.windows(32).any(|w| w == &body.as_bytes()[..32]),
        "plaintext found in the log"
    );

    // Without key 2 the channel refuses to open, naming the key.
    let no_key = write(
        "no_key.toml",
        &format!(
            "encryption = {{ active_key = 1, keys = {{ 1 = {:?} }} }}\n",
            root.join("k1.key")
        ),
    );
    let cfg2 = load_config_file(&no_key)
        .expect("loads")
        .file_channel("c1")
        .expect("c1");
    let e = tidegate::FileChannel::open(cfg2).expect_err("key 2 is missing");
    assert!(e.to_string().contains("key 2"), "{e}");

    let ch = tidegate::FileChannel::open(cfg).expect("reopen");
    let mut tx = ch.transaction();
    let got = tx.take().expect("take").expect("an event");
    assert_eq!(got.body(), body.as_bytes());
    tx.commit().expect("commit");
}

#[test]
fn bad_at_rest_keys_name_their_key_and_line() {
    let file = "[channels.c1]\ntype = \"file\"\ncheckpoint_dir = \"c\"\ndata_dirs = [\"d\"]\n";
    assert_rejects(
        &format!("{file}compression = \"gzip\"\n"),
        5,
        "channels.c1.compression",
        "gzip",
    );
    assert_rejects(
        &format!("{file}encryption = {{ active_key = 1, keys = {{ one = \"k1.key\" }} }}\n"),
        5,
        "channels.c1.encryption.keys.one",
        "1 to 65535",
    );
    assert_rejects(
        &format!("{file}encryption = {{ active_key = 3, keys = {{ 1 = \"k1.key\" }} }}\n"),
        5,
        "channels.c1.encryption",
        "active_key 3",
    );
    assert_rejects(
        &format!("{file}compression_threshold = \"lots\"\n"),
        5,
        "channels.c1.compression_threshold",
        "",
    );
    assert_rejects(
        &format!("{file}checkpoint_write_rate = \"64KiB\"\n"),
        5,
        "channels.c1.checkpoint_write_rate",
        "below the minimum",
    );
    for ok in ["\"8MiB\"", "0"] {
        let (code, out, err) = validate(&format!("{file}checkpoint_write_rate = {ok}\n"));
        assert_eq!(code, 0, "checkpoint_write_rate = {ok}: {out}{err}");
    }
    // Relative key paths are accepted as they are (relative to where the agent starts); the
    // topology shows the settings.
    let (code, out, err) = validate(&format!(
        "{file}encryption = {{ active_key = 1, keys = {{ 1 = \"keys/k1.key\" }} }}\n\
         compression = \"lz4\"\n"
    ));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("encrypted with key 1 (keys 1), compression lz4 above 256 bytes"),
        "{out}"
    );
}
