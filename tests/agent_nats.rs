//! The `nats` sink and source in the agent binary, against real JetStream servers.
//!
//! - Sink: a private `nats-server` is killed while events keep coming; `/health` reports the
//!   failing sink, and once the server is restarted (same port and store) every event is in
//!   the stream.
//! - Source: the agent is killed (`kill -9`) while it holds a fetched batch its (full) file
//!   channel has not committed; restarted with a working sink, every message of the stream
//!   reaches the sink at least once.

#[path = "common/agent.rs"]
mod agent;
mod nats_common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use agent::{Agent, WAIT, free_port, http_get, request, wait_until};
use nats_common::{PrivateServer, SHARED, create_stream, read_stream, unique};

fn file_channel(capacity: u64) -> String {
    format!(
        r#"
[channels.c1]
type = "file"
checkpoint_dir = "data/checkpoint"
data_dirs = ["data/log"]
capacity = {capacity}
transaction_capacity = 100
minimum_required_space = "1MiB"
max_segment_size = "1MiB"
max_event_size = "64KiB"
"#
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `/health` until it answers `want`; returns the body.
fn health(addr: &str, want: u16) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = http_get(addr, "/health");
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/health never {want}: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn post(addr: &str, from: usize, n: usize) {
    let body = format!(
        "[{}]",
        (from..from + n)
            .map(|i| format!("{{\"body\": \"ev-{i:03}\"}}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let answer = request(addr, "POST", "/", &body);
    assert!(
        matches!(answer, Some((200, _))),
        "POST of events {from}..{}: {answer:?}",
        from + n
    );
}

#[test]
fn sink_reports_unhealthy_while_the_server_is_down_and_delivers_everything_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = PrivateServer::start(dir.path());
    let url = server.url();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"[monitoring]
bind = "127.0.0.1:0"
unhealthy_after = "1s"
{}
[sources.in]
type = "http"
channels = ["c1"]
bind = "127.0.0.1:0"

[sinks.n1]
type = "nats"
channel = "c1"
batch_size = 10
url = "{url}"
subject = "health.events"
stream = "HEALTH"
create_stream = true
timeout = "1s"
"#,
            file_channel(10_000)
        ),
    )
    .expect("write config");
    let mut agent = Agent::start(&config, dir.path());
    let mon = agent.wait_ready();
    let http = agent.http_source_addr("in");
    let rt = runtime();
    let stored = |url: &str| -> BTreeSet<String> {
        rt.block_on(async {
            let js = nats_common::js(url).await;
            read_stream(&js, "HEALTH")
                .await
                .into_iter()
                .map(|m| m.body)
                .collect()
        })
    };
    let want = |n: usize| -> BTreeSet<String> { (0..n).map(|i| format!("ev-{i:03}")).collect() };

    post(&http, 0, 10);
    wait_until("the first events in the stream", || {
        stored(&url) == want(10)
    });
    health(&mon, 200);

    server.kill();
    post(&http, 10, 10);
    post(&http, 20, 10);
    let body = health(&mon, 503);
    assert!(
        body.contains("sink n1 has failed"),
        "/health names the failing sink: {body}"
    );
    let line = agent.wait_for_log("batch failed; rolled back, will retry");
    assert!(line.contains("\"sink\":\"n1\""), "{line}");

    server.restart();
    wait_until("every event in the stream after the restart", || {
        stored(&url) == want(30)
    });
    health(&mon, 200);
    agent.stop();
}

#[test]
fn source_delivers_every_message_at_least_once_across_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = unique("AGENTSRC");
    let subject = format!("{}.in", stream.to_lowercase());
    let n = 100;
    runtime().block_on(async {
        let js = nats_common::js(SHARED).await;
        create_stream(&js, &stream, &[&subject]).await;
        for i in 0..n {
            js.publish(subject.clone(), format!("m-{i:03}").into())
                .await
                .expect("publish")
                .await
                .expect("puback");
        }
    });
    let config = dir.path().join("agent.toml");
    let write_config = |sink: &str| {
        std::fs::write(
            &config,
            format!(
                r#"[monitoring]
bind = "127.0.0.1:0"
{}
[sources.n2]
type = "nats"
channels = ["c1"]
url = "{SHARED}"
stream = "{stream}"
consumer = "tidegate"
batch_size = 10
batch_timeout = "100ms"
ack_wait = "2s"

{sink}
"#,
                file_channel(25)
            ),
        )
        .expect("write config");
    };

    // Run 1: the sink cannot deliver (nothing listens on its port), so the channel fills
    // (25 events: two batches of 10) and the source holds its third batch, uncommitted.
    let dead = free_port();
    write_config(&format!(
        "[sinks.k1]\ntype = \"http\"\nchannel = \"c1\"\nbatch_size = 10\nurl = \"http://127.0.0.1:{dead}/\"\ntimeout = \"1s\"\n"
    ));
    let mut agent = Agent::start(&config, Path::new(dir.path()));
    agent.wait_for_log("nats source connected");
    agent.wait_for_log("delivery failed; retrying");
    agent.kill();

    // Run 2: a working sink. The channel's 20 committed events come out of the file channel;
    // the held batch (never acknowledged) is redelivered by the server; the rest is pulled.
    write_config("[sinks.k1]\ntype = \"logger\"\nchannel = \"c1\"\nbatch_size = 10\n");
    let mut agent = Agent::start(&config, Path::new(dir.path()));
    let want: BTreeSet<String> = (0..n).map(|i| format!("m-{i:03}")).collect();
    wait_until("every message reaches the sink", || {
        let got: BTreeSet<String> = agent.logged_bodies().into_iter().collect();
        want.is_subset(&got)
    });
    let got = agent.logged_bodies();
    assert!(got.len() >= n, "at least once: {} bodies", got.len());
    agent.stop();
}

#[test]
fn source_reports_a_lost_server_and_resumes_without_loss_when_it_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = PrivateServer::start(dir.path());
    let url = server.url();
    let rt = runtime();
    let publish = |from: usize, n: usize| {
        rt.block_on(async {
            let js = nats_common::js(&url).await;
            if from == 0 {
                create_stream(&js, "DOWN", &["down.in"]).await;
            }
            for i in from..from + n {
                js.publish("down.in", format!("m-{i:03}").into())
                    .await
                    .expect("publish")
                    .await
                    .expect("puback");
            }
        })
    };
    publish(0, 20);
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"[monitoring]
bind = "127.0.0.1:0"
unhealthy_after = "1s"
{}
[sources.n2]
type = "nats"
channels = ["c1"]
url = "{url}"
stream = "DOWN"
batch_size = 10
batch_timeout = "100ms"
ack_wait = "2s"

[sinks.k1]
type = "logger"
channel = "c1"
batch_size = 10
"#,
            file_channel(10_000)
        ),
    )
    .expect("write config");
    let mut agent = Agent::start(&config, dir.path());
    let mon = agent.wait_ready();
    let want = |n: usize| -> BTreeSet<String> { (0..n).map(|i| format!("m-{i:03}")).collect() };
    let arrived = |agent: &Agent, n: usize| {
        let got: BTreeSet<String> = agent.logged_bodies().into_iter().collect();
        want(n).is_subset(&got)
    };
    wait_until("the first messages reach the sink", || arrived(&agent, 20));
    health(&mon, 200);

    server.kill();
    agent.wait_for_log("source failed");
    let body = health(&mon, 503);
    assert!(
        body.contains("source n2 is stalled"),
        "/health names the failing source: {body}"
    );

    server.restart();
    publish(20, 20);
    wait_until("every message after the server returned", || {
        arrived(&agent, 40)
    });
    health(&mon, 200);
    agent.stop();
}
