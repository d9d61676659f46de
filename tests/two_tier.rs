//! The two-tier chain of docs/delivering.md under `kill -9`: agent A (taildir -> file channel ->
//! http sink, binary batches) forwards to agent B (http source -> file channel -> kafka sink),
//! which delivers to a private Tansu broker. A writer appends numbered lines to A's input file
//! and rotates it by rename; both agents are killed with SIGKILL at random moments and
//! restarted. At the end every line written is in Kafka (fetched back), duplicates allowed.
//! Rounds: `TIDEGATE_TWO_TIER_ROUNDS` (default 4); seed: `TIDEGATE_TWO_TIER_SEED`.

#[path = "common/agent.rs"]
mod agent;
#[path = "kafka_common/mod.rs"]
mod kafka_common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use agent::{Agent, Rng, free_port};
use kafka_common::{Tansu, fetch_until};

const TOPIC: &str = "tier";
const PARTITIONS: i32 = 2;

fn edge_config(dir: &Path, input: &Path, collector: u16) -> std::path::PathBuf {
    let config = dir.join("edge.toml");
    std::fs::write(
        &config,
        format!(
            r#"[agent]
name = "edge"
shutdown_timeout = "10s"

[channels.c1]
type = "file"
checkpoint_dir = "ck"
data_dirs = ["data"]

[sources.logs]
type = "taildir"
channels = ["c1"]
position_file = "taildir.json"
batch_size = 50
poll_interval = "100ms"

[sources.logs.filegroups.app]
path = "{}/app.log*"

[sinks.forward]
type = "http"
channel = "c1"
batch_size = 50
url = "http://127.0.0.1:{collector}/"
format = "binary"
timeout = "5s"
"#,
            input.display()
        ),
    )
    .expect("write edge config");
    config
}

fn collector_config(dir: &Path, port: u16, kafka: &str) -> std::path::PathBuf {
    let config = dir.join("collector.toml");
    std::fs::write(
        &config,
        format!(
            r#"[agent]
name = "collector"
shutdown_timeout = "10s"

[channels.c1]
type = "file"
checkpoint_dir = "ck"
data_dirs = ["data"]

[sources.edges]
type = "http"
channels = ["c1"]
bind = "127.0.0.1:{port}"

[sinks.kafka]
type = "kafka"
channel = "c1"
batch_size = 50
bootstrap_servers = "{kafka}"
topic = "{TOPIC}"
delivery_timeout = "10s"
"#
        ),
    )
    .expect("write collector config");
    config
}

#[test]
fn every_line_tailed_at_the_edge_reaches_kafka_through_kill_9_of_both_tiers() {
    let rounds: u64 = std::env::var("TIDEGATE_TWO_TIER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let mut rng = Rng::from_env("TIDEGATE_TWO_TIER_SEED");

    let broker = Tansu::start();
    broker.create_topic(TOPIC, PARTITIONS as u32);

    let root = tempfile::tempdir().expect("tempdir");
    let (edge_dir, collector_dir, input) = (
        root.path().join("edge"),
        root.path().join("collector"),
        root.path().join("in"),
    );
    for d in [&edge_dir, &collector_dir, &input] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let port = free_port();
    let edge_cfg = edge_config(&edge_dir, &input, port);
    let collector_cfg = collector_config(&collector_dir, port, &broker.addr());
    let mut collector = Agent::start(&collector_cfg, &collector_dir);
    let mut edge = Agent::start(&edge_cfg, &edge_dir);

    // The writer: numbered lines, a few at a time; every 400 lines the file is rotated by
    // rename (app.log -> app.log.N) and a new app.log begins.
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (written, stop, input) = (written.clone(), stop.clone(), input.clone());
        let mut rng = Rng(rng.0 ^ 0x9E37_79B9_7F4A_7C15);
        std::thread::spawn(move || {
            let path = input.join("app.log");
            let mut file = std::fs::File::create(&path).expect("create app.log");
            let mut n = 0u64;
            let mut rotations = 0;
            while !stop.load(Ordering::SeqCst) {
                let k = 1 + rng.below(10);
                let mut chunk = String::new();
                for i in n..n + k {
                    chunk.push_str(&format!("line-{i}\n"));
                }
                file.write_all(chunk.as_bytes()).expect("append");
                n += k;
                written.store(n, Ordering::SeqCst);
                if n / 400 > rotations {
                    rotations = n / 400;
                    std::fs::rename(&path, input.join(format!("app.log.{rotations}")))
                        .expect("rotate");
                    file = std::fs::File::create(&path).expect("new app.log");
                }
                std::thread::sleep(Duration::from_millis(2 + rng.below(8)));
            }
            n
        })
    };

    for round in 0..rounds {
        std::thread::sleep(Duration::from_millis(300 + rng.below(1200)));
        // Kill one tier, or both, at a random moment, and restart it.
        match rng.below(3) {
            0 => {
                edge.kill();
                edge = Agent::start(&edge_cfg, &edge_dir);
            }
            1 => {
                collector.kill();
                collector = Agent::start(&collector_cfg, &collector_dir);
            }
            _ => {
                edge.kill();
                collector.kill();
                std::thread::sleep(Duration::from_millis(rng.below(300)));
                collector = Agent::start(&collector_cfg, &collector_dir);
                edge = Agent::start(&edge_cfg, &edge_dir);
            }
        }
        eprintln!(
            "round {round}: {} lines written so far",
            written.load(Ordering::SeqCst)
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let total = writer.join().expect("writer");
    assert!(total > 0, "the writer wrote nothing");

    let want: BTreeSet<String> = (0..total).map(|i| format!("line-{i}")).collect();
    let mut seen = BTreeSet::new();
    let mut read = 0;
    let got = fetch_until(&broker.addr(), TOPIC, PARTITIONS, |records| {
        for r in &records[read..] {
            seen.insert(String::from_utf8_lossy(&r.body).into_owned());
        }
        read = records.len();
        seen.len() >= want.len() && want.is_subset(&seen)
    });
    let missing: Vec<&String> = want.difference(&seen).take(10).collect();
    assert!(
        missing.is_empty(),
        "{} of {total} lines missing from Kafka, first {missing:?}",
        want.difference(&seen).count()
    );
    assert!(
        got.len() as u64 >= total,
        "fewer records than lines: {} < {total}",
        got.len()
    );
    drop((edge, collector));
}
