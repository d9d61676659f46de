//! The agent under `kill -9`: HTTP -> file channel -> file_roll. A client records every event
//! that got a 200; the agent is killed at random moments and restarted, the client goes on; at
//! the end every acknowledged event is in the output files (duplicates only from redelivery).
//! Rounds: `TIDEGATE_AGENT_CRASH_ROUNDS` (default 4); seed: `TIDEGATE_AGENT_CRASH_SEED`.

#[path = "common/agent.rs"]
mod agent;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::{Agent, Rng, file_channel_to_files, free_port, request, wait_until};

#[test]
fn acknowledged_events_survive_kill_9_and_reach_the_files() {
    let rounds: u64 = std::env::var("TIDEGATE_AGENT_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let mut rng = Rng::from_env("TIDEGATE_AGENT_CRASH_SEED");
    let seed = rng.0;

    let dir = tempfile::tempdir().expect("tempdir");
    let (http, mon) = (free_port(), free_port());
    let config = dir.path().join("agent.toml");
    let source = format!(
        r#"[sources.http]
type = "http"
channels = ["c1"]
bind = "127.0.0.1:{http}""#
    );
    std::fs::write(&config, file_channel_to_files(mon, &source)).expect("write config");
    let http_addr = format!("127.0.0.1:{http}");
    let mon_addr = format!("127.0.0.1:{mon}");

    // The client: batches of 1..=20 events with unique ids, forever; records acknowledged ids.
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (acked, stop, addr) = (acked.clone(), stop.clone(), http_addr.clone());
        let mut rng = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
        std::thread::spawn(move || {
            let mut next = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let n = 1 + rng.below(20);
                let ids: Vec<u64> = (next..next + n).collect();
                next += n;
                let body = format!(
                    "[{}]",
                    ids.iter()
                        .map(|i| format!("{{\"body\": \"ev-{i:09}\"}}"))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                match request(&addr, "POST", "/", &body) {
                    Some((200, _)) => acked.lock().expect("lock").extend(ids),
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })
    };

    let mut agent = Agent::start(&config, dir.path());
    for round in 0..rounds {
        let before = acked.lock().expect("lock").len();
        // Until this run acknowledged something, then a random while longer.
        wait_until("the agent acknowledges events", || {
            acked.lock().expect("lock").len() > before
        });
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        agent.kill();
        eprintln!(
            "round {round}: killed with {} events acknowledged",
            acked.lock().expect("lock").len()
        );
        agent = Agent::start(&config, dir.path());
    }
    let before = acked.lock().expect("lock").len();
    wait_until("acknowledged events after the last restart", || {
        acked.lock().expect("lock").len() > before
    });
    stop.store(true, Ordering::SeqCst);
    client.join().expect("client");

    // Let the sink drain the channel, then stop cleanly (which finishes the open file).
    wait_until("the channel drains", || {
        request(&mon_addr, "GET", "/metrics.json", "")
            .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v["CHANNEL.c1"]["ChannelSize"] == "0")
    });
    agent.stop();

    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(dir.path().join("out")).expect("out dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read output");
        for line in text.lines() {
            if let Some(id) = line.strip_prefix("ev-").and_then(|d| d.parse::<u64>().ok()) {
                seen.insert(id);
            }
        }
    }
    let acked = acked.lock().expect("lock");
    let missing: Vec<&u64> = acked.iter().filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events missing (seed {seed}): first {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(acked.len() > rounds as usize);
}
