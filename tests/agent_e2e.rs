//! The agent binary end to end: real processes, real signals, real sockets (loopback).
//! Every wait is bounded by a generous timeout; nothing asserts on timing.

#[path = "common/agent.rs"]
mod agent;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::{Agent, BIN, WAIT, http_get};
use tidegate::agent::config::load_config_file;

fn file_channel_toml(name: &str) -> String {
    format!(
        r#"
[channels.{name}]
type = "file"
checkpoint_dir = "data/{name}/checkpoint"
data_dirs = ["data/{name}/data"]
capacity = 100000
transaction_capacity = 1000
minimum_required_space = "1MiB"
max_segment_size = "1MiB"
max_event_size = "64KiB"
"#
    )
}

/// Takes every event left in channel `name` of `config` (opened directly, as an offline tool).
fn leftover_bodies(config: &Path, dir: &Path, name: &str) -> Vec<String> {
    let cfg = load_config_file(config).expect("config loads");
    let fc = cfg.file_channel(name).expect("file channel");
    let fc = tidegate::FileChannelConfig::new(
        dir.join(fc.checkpoint_dir()),
        fc.data_dirs().iter().map(|d| dir.join(d)).collect(),
    )
    .minimum_required_space(1 << 20)
    .max_segment_size(1 << 20)
    .max_event_size(64 << 10);
    let ch = tidegate::FileChannel::open(fc).expect("reopen the channel");
    let mut out = Vec::new();
    loop {
        let mut tx = ch.transaction();
        let got = tx.take_batch(1000, Duration::ZERO).expect("take");
        tx.commit().expect("commit");
        if got.is_empty() {
            break;
        }
        out.extend(
            got.iter()
                .map(|e| String::from_utf8_lossy(e.body()).into_owned()),
        );
    }
    ch.close().expect("close");
    out
}

#[test]
fn stdin_through_a_file_channel_drains_to_the_sink_and_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nname = \"a1\"\n{}\n[sources.in]\ntype = \"stdin\"\nchannels = [\"c1\"]\nbatch_size = 50\n\n[sinks.log]\ntype = \"logger\"\nchannel = \"c1\"\nbatch_size = 7\nmax_body_length = 64\n",
            file_channel_toml("c1")
        ),
    )
    .expect("write config");
    let mut agent = Agent::start(&config, dir.path());
    {
        let mut stdin = agent.child.stdin.take().expect("stdin");
        for i in 0..1000 {
            writeln!(stdin, "line-{i}").expect("write a line");
        }
    } // EOF
    assert_eq!(agent.wait_exit(), 0, "log:\n{}", agent.lines().join("\n"));
    let logged = agent.logged_bodies();
    let want: Vec<String> = (0..1000).map(|i| format!("line-{i}")).collect();
    assert_eq!(logged, want, "every line delivered once, in order");
    assert!(
        leftover_bodies(&config, dir.path(), "c1").is_empty(),
        "the channel was drained"
    );
}

#[test]
fn sigterm_stops_cleanly_and_a_restart_finds_nothing_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    let sink =
        "[sinks.log]\ntype = \"logger\"\nchannel = \"c1\"\nbatch_size = 10\nmax_body_length = 64\n";
    std::fs::write(
        &config,
        format!(
            "[agent]\nshutdown_timeout = \"60s\"\n{}\n[sources.gen]\ntype = \"seq\"\nchannels = [\"c1\"]\nbatch_size = 100\n\n{sink}",
            file_channel_toml("c1")
        ),
    )
    .expect("write config");
    let mut agent = Agent::start(&config, dir.path());
    // Let events flow (the logger has printed a few), then stop it mid-stream.
    agent.wait_for_log("\"body\":\"200\"");
    agent.signal("TERM");
    assert_eq!(agent.wait_exit(), 0, "log:\n{}", agent.lines().join("\n"));
    agent.wait_for_log("agent stopped");
    let first = agent.logged_bodies();
    assert!(!first.is_empty());

    // Restart with the source replaced by an (empty) stdin: the agent drains what is left.
    std::fs::write(
        &config,
        format!(
            "{}\n[sources.in]\ntype = \"stdin\"\nchannels = [\"c1\"]\n\n{sink}",
            file_channel_toml("c1")
        ),
    )
    .expect("rewrite config");
    let mut again = Agent::start(&config, dir.path());
    drop(again.child.stdin.take()); // EOF at once
    assert_eq!(again.wait_exit(), 0, "log:\n{}", again.lines().join("\n"));
    let second = again.logged_bodies();

    // seq commits 0, 1, 2, ... in order: everything it committed was delivered, by one run or
    // the other, so the union is 0..=max with no gap.
    let seen: BTreeSet<u64> = first
        .iter()
        .chain(&second)
        .map(|b| b.parse().expect("seq body"))
        .collect();
    let max = *seen.last().expect("some events");
    assert!(max >= 200);
    let missing: Vec<u64> = (0..=max).filter(|i| !seen.contains(i)).collect();
    assert!(missing.is_empty(), "lost events: {missing:?}");
    assert!(leftover_bodies(&config, dir.path(), "c1").is_empty());
}

#[test]
fn sighup_reloads_a_changed_sink_and_refuses_a_broken_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    let write = |max_body: &str| {
        std::fs::write(
            &config,
            format!(
                "[channels.m1]\ntype = \"memory\"\n\n[sources.in]\ntype = \"stdin\"\nchannels = [\"m1\"]\nbatch_size = 1\n\n[sinks.log]\ntype = \"logger\"\nchannel = \"m1\"\nbatch_size = 1\n{max_body}\n"
            ),
        )
        .expect("write config");
    };
    write("max_body_length = 3");
    let mut agent = Agent::start(&config, dir.path());
    let mut stdin = agent.child.stdin.take().expect("stdin");
    writeln!(stdin, "abcdefgh").expect("write");
    agent.wait_for_log("\"body\":\"abc... (8 bytes)\"");

    write("max_body_length = 5");
    agent.signal("HUP");
    let restarted = agent.wait_for_log("reload: restarting what changed");
    let fields: serde_json::Value = serde_json::from_str(&restarted).expect("json");
    assert_eq!(
        fields["fields"]["sinks"], "[\"sink log\"]",
        "the changed sink restarts"
    );
    assert_eq!(
        fields["fields"]["sources"], "[]",
        "the unchanged source keeps running"
    );
    agent.wait_for_log("reload done");
    writeln!(stdin, "abcdefgh").expect("write");
    agent.wait_for_log("\"body\":\"abcde... (8 bytes)\"");

    write("max_body_length = \"long\"");
    agent.signal("HUP");
    let refused = agent.wait_for_log("reload refused");
    assert!(refused.contains("sinks.log.max_body_length"), "{refused}");
    writeln!(stdin, "0123456789").expect("write");
    agent.wait_for_log("\"body\":\"01234... (10 bytes)\"");

    drop(stdin);
    assert_eq!(agent.wait_exit(), 0, "log:\n{}", agent.lines().join("\n"));
}

#[test]
fn monitoring_endpoints_report_metrics_health_and_readiness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[monitoring]\nbind = \"127.0.0.1:0\"\n{}\n[sources.gen]\ntype = \"seq\"\nchannels = [\"c1\"]\ncount = 500\n\n[sources.in]\ntype = \"stdin\"\nchannels = [\"c1\"]\n\n[sinks.k1]\ntype = \"null\"\nchannel = \"c1\"\n",
            file_channel_toml("c1")
        ),
    )
    .expect("write config");
    let mut agent = Agent::start(&config, dir.path());
    let addr = agent.monitoring_addr();
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = http_get(&addr, "/ready");
        if status == 200 {
            assert!(body.contains("ready"), "{body}");
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("replaying"), "{body}");
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Wait until the null sink drained every seq event.
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = http_get(&addr, "/metrics.json");
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).expect("metrics.json is JSON");
        if v["SINK.k1"]["EventDrainSuccessCount"] == "500" {
            assert_eq!(v["CHANNEL.c1"]["ChannelCapacity"], "100000");
            assert_eq!(v["CHANNEL.c1"]["ChannelSize"], "0");
            assert_eq!(v["CHANNEL.c1"]["EventPutSuccessCount"], "500");
            assert_eq!(v["SOURCE.gen"]["EventAcceptedCount"], "500");
            assert_eq!(v["SOURCE.gen"]["AppendBatchAcceptedCount"], "5");
            break;
        }
        assert!(Instant::now() < deadline, "not drained: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = http_get(&addr, "/health");
    assert_eq!(status, 200, "{body}");
    let (status, metrics) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tidegate_channel_event_take_successes_total{channel=\"c1\"} 500"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tidegate_sink_event_drain_successes_total{sink=\"k1\"} 500"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tidegate_channel_open{channel=\"c1\"} 1"),
        "{metrics}"
    );

    match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(mut p) => {
            p.stdin
                .take()
                .expect("stdin")
                .write_all(metrics.as_bytes())
                .expect("feed promtool");
            let out = p.wait_with_output().expect("promtool");
            assert!(
                out.status.success(),
                "promtool check metrics failed:\n{}{}\n{metrics}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(e) => {
            // .ci/run installs promtool (Debian's `prometheus`); in CI its absence is a failure.
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is missing in CI: {e}"
            );
            eprintln!("promtool not installed ({e}); skipped the promtool check");
        }
    }

    agent.signal("TERM");
    assert_eq!(agent.wait_exit(), 0, "log:\n{}", agent.lines().join("\n"));
}

#[test]
fn sighup_reopens_a_changed_channel_with_its_data_and_starts_a_new_sink() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    let base = format!(
        "[monitoring]\nbind = \"127.0.0.1:0\"\n{}\n[sources.in]\ntype = \"stdin\"\nchannels = [\"c1\"]\nbatch_size = 1\n",
        file_channel_toml("c1")
    );
    // No sink yet: the events stay in the channel.
    std::fs::write(&config, &base).expect("write config");
    let mut agent = Agent::start(&config, dir.path());
    let mut stdin = queue_ten_lines(&mut agent, "c1");
    let addr = agent.monitoring_addr();
    // A changed channel option (reopen, data kept) and a new sink.
    let changed = base.replace("capacity = 100000", "capacity = 200000");
    std::fs::write(
        &config,
        format!("{changed}\n[sinks.log]\ntype = \"logger\"\nchannel = \"c1\"\nbatch_size = 5\n"),
    )
    .expect("rewrite config");
    agent.signal("HUP");
    let line = agent.wait_for_log("reload: restarting what changed");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert_eq!(v["fields"]["channels"], "{\"c1\"}", "{line}");
    assert_eq!(
        v["fields"]["sources"], "[\"in\"]",
        "the source on the channel restarts: {line}"
    );
    agent.wait_for_log("\"body\":\"kept-9\"");
    writeln!(stdin, "after-reload").expect("write");
    agent.wait_for_log("\"body\":\"after-reload\"");
    let (_, body) = http_get(&addr, "/metrics.json");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        v["CHANNEL.c1"]["ChannelCapacity"], "200000",
        "the new option is in force"
    );
    drop(stdin);
    assert_eq!(agent.wait_exit(), 0, "log:\n{}", agent.lines().join("\n"));
    let logged = agent.logged_bodies();
    let mut want: Vec<String> = (0..10).map(|i| format!("kept-{i}")).collect();
    want.push("after-reload".into());
    assert_eq!(logged, want);
}

#[test]
fn health_turns_503_when_a_source_stalls_on_a_full_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    // No sink drains m1: once it holds 10 events every put fails and the source stalls.
    std::fs::write(
        &config,
        "[monitoring]\nbind = \"127.0.0.1:0\"\nunhealthy_after = \"0s\"\n\n[channels.m1]\ntype = \"memory\"\ncapacity = 10\nkeep_alive = \"10ms\"\n\n[sources.gen]\ntype = \"seq\"\nchannels = [\"m1\"]\nbatch_size = 5\n",
    )
    .expect("write config");
    let mut agent = Agent::start(&config, dir.path());
    let addr = agent.monitoring_addr();
    let deadline = Instant::now() + WAIT;
    let body = loop {
        let (status, body) = http_get(&addr, "/health");
        if status == 503 && body.contains("stalled") {
            break body;
        }
        assert!(matches!(status, 200 | 503), "{status} {body}");
        assert!(Instant::now() < deadline, "never unhealthy: {body}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let v: serde_json::Value = serde_json::from_str(&body).expect("health is JSON");
    assert_eq!(v["status"], "unhealthy");
    let reasons = v["reasons"].as_array().expect("reasons");
    assert!(
        reasons.iter().any(|r| r
            .as_str()
            .is_some_and(|r| r.contains("source gen is stalled") && r.contains("m1 is full"))),
        "{body}"
    );
    let (_, metrics) = http_get(&addr, "/metrics");
    assert!(
        metrics.contains("tidegate_channel_size{channel=\"m1\"} 10"),
        "{metrics}"
    );
    agent.signal("INT");
    assert_eq!(agent.wait_exit(), 0, "log:\n{}", agent.lines().join("\n"));
}

#[test]
fn replay_progress_is_logged_without_a_terminal_and_the_backlog_is_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[sources.in]\ntype = \"stdin\"\nchannels = [\"c1\"]\n\n[sinks.k1]\ntype = \"null\"\nchannel = \"c1\"\nbatch_size = 500\n",
            file_channel_toml("c1")
        ),
    )
    .expect("write config");
    // A backlog over several 1 MiB segments, left without a checkpoint: a full replay.
    let cfg = tidegate::FileChannelConfig::new(
        dir.path().join("data/c1/checkpoint"),
        vec![dir.path().join("data/c1/data")],
    )
    .minimum_required_space(1 << 20)
    .max_segment_size(1 << 20)
    .max_event_size(64 << 10)
    .checkpoint_on_close(false);
    let ch = tidegate::FileChannel::open(cfg).expect("open");
    for b in 0..6 {
        let mut tx = ch.transaction();
        for i in 0..500 {
            tx.put(tidegate::Event::new(
                format!("{b}-{i}-{}", "x".repeat(1000)).into_bytes(),
            ))
            .expect("put");
        }
        tx.commit().expect("commit");
    }
    ch.close().expect("close");

    let mut agent = Agent::start(&config, dir.path());
    drop(agent.child.stdin.take());
    assert_eq!(agent.wait_exit(), 0, "log:\n{}", agent.lines().join("\n"));
    let line = agent.wait_for_log("replay progress");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    let total = v["fields"]["segments_total"]
        .as_u64()
        .expect("segments_total");
    assert!(total >= 2, "{line}");
    let last = agent
        .lines()
        .into_iter()
        .rev()
        .find(|l| l.contains("replay progress"))
        .expect("a progress line");
    let v: serde_json::Value = serde_json::from_str(&last).expect("json");
    assert_eq!(
        v["fields"]["segments_done"], v["fields"]["segments_total"],
        "{last}"
    );
    agent.wait_for_log("\"events\":3000");
    assert!(leftover_bodies(&config, dir.path(), "c1").is_empty());
}

#[test]
fn a_component_that_cannot_start_after_a_reload_shows_in_health_until_fixed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    let write = |channel: &str| {
        std::fs::write(
            &config,
            format!(
                "[monitoring]\nbind = \"127.0.0.1:0\"\n\n{channel}\n[sources.in]\ntype = \"stdin\"\nchannels = [\"c1\"]\n\n[sinks.k1]\ntype = \"null\"\nchannel = \"c1\"\n"
            ),
        )
        .expect("write config");
    };
    let memory = "[channels.c1]\ntype = \"memory\"\n";
    write(memory);
    let mut agent = Agent::start(&config, dir.path());
    let addr = agent.monitoring_addr();
    let health = |want: u16| {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, body) = http_get(&addr, "/health");
            if status == want {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "health never {want}: {status} {body}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    health(200);
    // A file channel whose directory cannot be created (its parent is a file).
    std::fs::write(dir.path().join("blocker"), b"not a directory").expect("write blocker");
    write(
        "[channels.c1]\ntype = \"file\"\ncheckpoint_dir = \"blocker/ck\"\ndata_dirs = [\"blocker/data\"]\nminimum_required_space = \"1MiB\"\n",
    );
    agent.signal("HUP");
    agent.wait_for_log("reload done");
    let body = health(503);
    assert!(
        body.contains("sink k1 is stopped") && body.contains("channel c1 is not open"),
        "{body}"
    );
    assert!(body.contains("source in is stopped"), "{body}");
    assert!(body.contains("channel c1 did not open"), "{body}");
    write(memory);
    agent.signal("HUP");
    health(200);
    drop(agent.child.stdin.take());
    assert_eq!(agent.wait_exit(), 0, "log:\n{}", agent.lines().join("\n"));
}

#[test]
fn a_flume_properties_file_runs_and_its_problems_name_the_properties_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let props = dir.path().join("flume.properties");
    let text = || {
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
             a1.channels.c1.type = file\na1.channels.c1.checkpointDir = data/ck\n\
             a1.channels.c1.dataDirs = data/log\na1.channels.c1.transactionCapacity = 100\n\
             a1.channels.c1.minimumRequiredSpace = 1048576\n\
             a1.sources.r1.type = seq\na1.sources.r1.totalEvents = 1000\na1.sources.r1.channels = c1\n\
             a1.sinks.k1.type = logger\na1.sinks.k1.channel = c1\n\
             a1.sinks.k1.maxBytesToLog = 8\n".to_string()
    };
    std::fs::write(&props, text()).expect("write");
    let out = Command::new(BIN)
        .args(["--log-format", "json", "agent", "--flume-conf"])
        .arg(&props)
        .args(["--name", "a1"])
        .current_dir(dir.path())
        .output()
        .expect("run the agent");
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let bodies: BTreeSet<u64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "event")
        .filter_map(|v| v["fields"]["body"].as_str().and_then(|b| b.parse().ok()))
        .collect();
    assert_eq!(
        bodies,
        (0..1000).collect(),
        "every seq event reached the logger"
    );

    let bad = text().replace("transactionCapacity = 100", "transactionCapacity = 10")
        + "a1.sources.r1.batchSize = 10\na1.sinks.k1.batchSize = 50\n";
    std::fs::write(&props, bad).expect("write");
    let out = Command::new(BIN)
        .args(["validate", "--flume-conf"])
        .arg(&props)
        .args(["--name", "a1"])
        .output()
        .expect("run validate");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("flume.properties:16: `a1.sinks.k1.batchSize`"),
        "{err}"
    );
}

/// SIGHUP with a changed memory channel table keeps the running channel and its events (the
/// change waits for the next start): a new, empty channel would lose what the source
/// acknowledged.
#[test]
fn sighup_on_a_changed_memory_channel_keeps_its_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    let base = "[monitoring]\nbind = \"127.0.0.1:0\"\n\n[channels.m1]\ntype = \"memory\"\ncapacity = 1000\n\n[sources.in]\ntype = \"stdin\"\nchannels = [\"m1\"]\nbatch_size = 1\n".to_string();
    std::fs::write(&config, &base).expect("write config");
    let mut agent = Agent::start(&config, dir.path());
    let mut stdin = queue_ten_lines(&mut agent, "m1");
    let changed = base.replace("capacity = 1000", "capacity = 2000");
    std::fs::write(
        &config,
        format!("{changed}\n[sinks.log]\ntype = \"logger\"\nchannel = \"m1\"\nbatch_size = 5\n"),
    )
    .expect("rewrite config");
    agent.signal("HUP");
    agent.wait_for_log("reload done");
    writeln!(stdin, "after-reload").expect("write");
    agent.wait_for_log("\"body\":\"after-reload\"");
    drop(stdin);
    assert_eq!(agent.wait_exit(), 0, "log:\n{}", agent.lines().join("\n"));
    let logged = agent.logged_bodies();
    let mut want: Vec<String> = (0..10).map(|i| format!("kept-{i}")).collect();
    want.push("after-reload".into());
    assert_eq!(
        logged, want,
        "acknowledged events of the memory channel were lost on reload"
    );
}

/// `/ready` follows the channels, not just the start: a channel that a reload closed and could
/// not reopen makes `/ready` answer 503, as `/health` does.
#[test]
fn ready_is_503_while_a_reloaded_channel_is_not_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    let base = format!(
        "[monitoring]\nbind = \"127.0.0.1:0\"\n{}\n[sources.in]\ntype = \"stdin\"\nchannels = [\"c1\"]\nbatch_size = 1\n",
        file_channel_toml("c1")
    );
    std::fs::write(&config, &base).expect("write config");
    let mut agent = Agent::start(&config, dir.path());
    let addr = agent.monitoring_addr();
    agent.wait_for_log("source started");
    assert_eq!(http_get(&addr, "/ready").0, 200);
    // The new data directory cannot be created: the channel does not reopen.
    let broken = base.replace("data/c1/data", "/proc/tidegate-review/data");
    std::fs::write(&config, broken).expect("rewrite config");
    agent.signal("HUP");
    agent.wait_for_log("reload done");
    let (health, body) = http_get(&addr, "/health");
    assert_eq!(health, 503, "{body}");
    assert!(body.contains("channel c1 did not open"), "{body}");
    let (ready, body) = http_get(&addr, "/ready");
    agent.signal("TERM");
    let _ = agent.wait_exit();
    assert_eq!(
        ready, 503,
        "/ready says ready while channel c1 is not open: {body}"
    );
}

/// A SIGTERM during a reload that is stuck (an HTTP client dripping its body keeps the old http
/// source from stopping) is still obeyed: `shutdown_timeout` bounds the exit.
#[test]
fn sigterm_during_a_reload_stuck_on_a_source_exits_within_the_shutdown_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    let base = "[agent]\nname = \"a1\"\nshutdown_timeout = \"1s\"\n\n[channels.m1]\ntype = \"memory\"\n\n[sources.web]\ntype = \"http\"\nchannels = [\"m1\"]\nbind = \"127.0.0.1:0\"\n\n[sinks.k]\ntype = \"null\"\nchannel = \"m1\"\n".to_string();
    std::fs::write(&config, &base).expect("write config");
    let mut agent = Agent::start(&config, dir.path());
    let line = agent.wait_for_log("http source listening");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    let addr = v["fields"]["addr"]
        .as_str()
        .and_then(|a| a.strip_prefix("Some(")?.strip_suffix(')'))
        .expect("addr")
        .to_string();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dripping = {
        let stop = stop.clone();
        let mut s = TcpStream::connect(&addr).expect("connect");
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n["
        )
        .expect("send");
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(40);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
                if s.write_all(b" ").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(
        &config,
        base.replace("127.0.0.1:0\"", "127.0.0.1:0\"\nmax_body_size = \"1MiB\""),
    )
    .expect("rewrite config");
    agent.signal("HUP");
    agent.wait_for_log("reload: restarting what changed");
    agent.signal("TERM");
    // Generous: 20 times the shutdown_timeout, and well before the client stops dripping.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut exited = false;
    while Instant::now() < deadline {
        if agent.child.try_wait().expect("try_wait").is_some() {
            exited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = dripping.join();
    assert!(
        exited,
        "SIGTERM during a reload did not stop the agent within 20 s (shutdown_timeout 1 s); log:\n{}",
        agent.lines().join("\n")
    );
}

/// Writes `kept-0` .. `kept-9` to the agent's stdin and waits (up to [`WAIT`]) until channel
/// `channel` holds all ten; returns the stdin for more lines.
fn queue_ten_lines(agent: &mut Agent, channel: &str) -> std::process::ChildStdin {
    let addr = agent.monitoring_addr();
    let mut stdin = agent.child.stdin.take().expect("stdin");
    for i in 0..10 {
        writeln!(stdin, "kept-{i}").expect("write");
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = http_get(&addr, "/metrics.json");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if v[format!("CHANNEL.{channel}")]["ChannelSize"] == "10" {
            return stdin;
        }
        assert!(
            Instant::now() < deadline,
            "events never reached the channel: {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
