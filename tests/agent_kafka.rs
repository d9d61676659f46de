//! The `tidegate agent` binary with the `kafka` sink and source, against a private Tansu broker
//! (see `kafka_common`): the broker killed under the sink (`/health` reports it; every event
//! sent while it was down arrives once it is back), and the agent killed (`kill -9`) under the
//! source (every record reaches the channel at least once).

#[path = "common/agent.rs"]
mod agent;
mod kafka_common;

use std::collections::BTreeSet;
use std::path::Path;

use agent::{Agent, request, wait_until};
use kafka_common::{Record, Tansu, fetch_until};

fn post(addr: &str, bodies: &[String]) {
    let json = format!(
        "[{}]",
        bodies
            .iter()
            .map(|b| format!("{{\"body\": \"{b}\"}}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let answer = request(addr, "POST", "/", &json);
    assert!(
        matches!(answer, Some((200, _))),
        "the http source refused the events: {answer:?}"
    );
}

fn health(mon: &str) -> Option<(u16, String)> {
    request(mon, "GET", "/health", "")
}

/// The broker dies under a running agent: `/health` reports the failing kafka sink; the broker
/// comes back (same port, empty storage: what it had acknowledged before is gone, which is the
/// broker's loss, not ours): every event accepted while it was down is fetched back, and
/// `/health` is ok again.
#[test]
fn broker_down_health_reports_the_sink_and_every_event_arrives_when_it_returns() {
    let mut broker = Tansu::start();
    broker.create_topic("events", 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"[monitoring]
bind = "127.0.0.1:0"
unhealthy_after = "0s"

[channels.c1]
type = "memory"

[sources.in]
type = "http"
channels = ["c1"]
bind = "127.0.0.1:0"

[sinks.k1]
type = "kafka"
channel = "c1"
batch_size = 10
bootstrap_servers = "{addr}"
topic = "events"
delivery_timeout = "2s"
properties = {{ "linger.ms" = "5" }}
"#,
            addr = broker.addr()
        ),
    )
    .expect("write config");
    let agent = Agent::start(&config, dir.path());
    let mon = agent.wait_ready();
    let http = agent.http_source_addr("in");

    let before: Vec<String> = (0..5).map(|i| format!("before-{i}")).collect();
    post(&http, &before);
    let addr = broker.addr();
    fetch_until(&addr, "events", 2, |g| g.len() >= 5);

    broker.kill();
    let during: Vec<String> = (0..20).map(|i| format!("during-{i}")).collect();
    post(&http, &during);
    wait_until("/health reports the failing kafka sink", || {
        health(&mon).is_some_and(|(s, b)| s == 503 && b.contains("sink k1"))
    });

    broker.restart();
    broker.create_topic("events", 2);
    let got = fetch_until(&addr, "events", 2, |g| {
        let seen: BTreeSet<&[u8]> = g.iter().map(|f| f.body.as_slice()).collect();
        during.iter().all(|d| seen.contains(d.as_bytes()))
    });
    let seen: BTreeSet<String> = got
        .iter()
        .map(|f| String::from_utf8_lossy(&f.body).into_owned())
        .collect();
    for d in &during {
        assert!(seen.contains(d), "{d} lost");
    }
    wait_until("/health is ok again", || {
        health(&mon).is_some_and(|(s, _)| s == 200)
    });
}

fn agent_config(dir: &Path, broker: &str, sink: &str) -> std::path::PathBuf {
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"[monitoring]
bind = "127.0.0.1:0"

[channels.c1]
type = "file"
checkpoint_dir = "data/checkpoint"
data_dirs = ["data/log"]
capacity = 30
transaction_capacity = 100
minimum_required_space = "1MiB"
max_segment_size = "1MiB"
max_event_size = "64KiB"
checkpoint_interval = "1s"

[sources.k2]
type = "kafka"
channels = ["c1"]
bootstrap_servers = "{broker}"
topics = ["events"]
group_id = "agent-test"
batch_size = 10
batch_duration = "200ms"
# A member killed with -9 holds its partitions until its session times out.
properties = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "1000" }}

{sink}
"#
        ),
    )
    .expect("write config");
    config
}

/// Ids `rec-N` in the text files under `out` (a file being written may end mid-line).
fn ids_in(out: &Path) -> BTreeSet<u64> {
    let mut seen = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(out) else {
        return seen;
    };
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        seen.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("rec-").and_then(|d| d.parse::<u64>().ok())),
        );
    }
    seen
}

/// `kill -9` of the agent while the kafka source holds a batch its (full) channel has not
/// committed: after a restart (now with a sink that drains the channel) every record reaches
/// the output at least once. A source that committed offsets before the channel commit loses
/// the batch it held.
#[test]
fn kill_9_under_the_source_loses_no_record() {
    const N: u64 = 100;
    let broker = Tansu::start();
    broker.create_topic("events", 2);
    let records: Vec<Record> = (0..N)
        .map(|i| (None, Vec::new(), format!("rec-{i}")))
        .collect();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(kafka_common::produce(&broker.addr(), "events", &records));

    let dir = tempfile::tempdir().expect("tempdir");
    // 1. The sink cannot deliver (nothing listens there): the channel fills up (30 events) and
    //    the source is left holding a batch it cannot commit.
    let dead = format!("127.0.0.1:{}", agent::free_port());
    let failing = format!(
        "[sinks.down]\ntype = \"http\"\nchannel = \"c1\"\nbatch_size = 10\nurl = \"http://{dead}/\"\ntimeout = \"1s\"\n"
    );
    let config = agent_config(dir.path(), &broker.addr(), &failing);
    let mut agent = Agent::start(&config, dir.path());
    agent.wait_for_log("delivery failed; retrying");
    agent.kill();

    // 2. Restarted with a sink that writes files: every record arrives.
    let files = "[sinks.files]\ntype = \"file_roll\"\nchannel = \"c1\"\nbatch_size = 10\ndirectory = \"out\"\nroll_interval = \"1s\"\nserializer = \"text\"\n";
    let config = agent_config(dir.path(), &broker.addr(), files);
    let mut agent = Agent::start(&config, dir.path());
    let out = dir.path().join("out");
    let deadline = std::time::Instant::now() + agent::WAIT;
    while (ids_in(&out).len() as u64) < N {
        let seen = ids_in(&out);
        assert!(
            std::time::Instant::now() < deadline,
            "within {:?}, records still missing from the output: {:?}; log:\n{}",
            agent::WAIT,
            (0..N).filter(|i| !seen.contains(i)).collect::<Vec<_>>(),
            agent.lines().join("\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    agent.stop();
    let seen = ids_in(&out);
    let missing: Vec<u64> = (0..N).filter(|i| !seen.contains(i)).collect();
    assert!(missing.is_empty(), "records lost: {missing:?}");
}
