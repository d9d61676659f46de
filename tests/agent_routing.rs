//! Routing in the agent binary, end to end over loopback: an HTTP client posts Flume JSON batches
//! to the `http` source; `http` sinks deliver to small receivers in this test that record what
//! they got. Covered: a failover sink group (primary down, then back), a load-balancing group,
//! a multiplexing selector, and a full channel (503, nothing lost, nothing refused counted).
//! Every wait is a bounded poll; nothing asserts on timing.

#[path = "common/agent.rs"]
mod agent;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent::{Agent, WAIT, request, wait_until};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use tempfile::TempDir;

/// An event as a receiver got it.
#[derive(Clone, Debug)]
struct Got {
    headers: BTreeMap<String, String>,
    body: String,
}

#[derive(Default)]
struct ReceiverState {
    /// What to answer: 200 records the batch, anything else refuses it.
    status: AtomicU16,
    got: Mutex<Vec<Got>>,
}

/// A Flume-JSON HTTP receiver on 127.0.0.1:0, answering a settable status.
struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
    _rt: tokio::runtime::Runtime,
}

async fn receive(State(state): State<Arc<ReceiverState>>, body: Bytes) -> StatusCode {
    let status = state.status.load(Ordering::SeqCst);
    if status != 200 {
        return StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    }
    let Ok(batch) = serde_json::from_slice::<Vec<serde_json::Value>>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let events = batch.iter().map(|e| Got {
        headers: e["headers"]
            .as_object()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default(),
        body: e["body"].as_str().unwrap_or_default().to_string(),
    });
    state.got.lock().expect("lock").extend(events);
    StatusCode::OK
}

impl Receiver {
    fn start() -> Receiver {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let state = Arc::new(ReceiverState {
            status: AtomicU16::new(200),
            got: Mutex::default(),
        });
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind a receiver");
        let addr = listener.local_addr().expect("receiver address");
        let app = axum::Router::new()
            .route("/", axum::routing::post(receive))
            .with_state(state.clone());
        rt.spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url: format!("http://{addr}/"),
            state,
            _rt: rt,
        }
    }

    fn answer(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    fn got(&self) -> Vec<Got> {
        self.state.got.lock().expect("lock").clone()
    }

    /// The ids (`ev-N` bodies) received, each once.
    fn ids(&self) -> BTreeSet<u64> {
        self.got().iter().filter_map(|g| id_of(&g.body)).collect()
    }
}

fn id_of(body: &str) -> Option<u64> {
    body.strip_prefix("ev-")?.parse().ok()
}

/// The client side: posts batches of events `ev-N` to the http source and remembers which
/// ids got a 200 and which a 503.
struct Client {
    addr: String,
    next: u64,
    acked: BTreeSet<u64>,
    refused: BTreeSet<u64>,
}

impl Client {
    fn new(addr: String) -> Client {
        Client {
            addr,
            next: 0,
            acked: BTreeSet::new(),
            refused: BTreeSet::new(),
        }
    }

    /// Posts `n` new events carrying `headers`; returns their ids and the status.
    fn send(&mut self, n: u64, headers: &[(&str, &str)]) -> (Vec<u64>, u16) {
        let ids: Vec<u64> = (self.next..self.next + n).collect();
        self.next += n;
        let headers = serde_json::Value::Object(
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
                .collect(),
        );
        let body = serde_json::Value::Array(
            ids.iter()
                .map(|i| serde_json::json!({"headers": headers, "body": format!("ev-{i}")}))
                .collect(),
        )
        .to_string();
        let mut status = None;
        wait_until("the http source answers", || {
            status = request(&self.addr, "POST", "/", &body).map(|(s, _)| s);
            status.is_some()
        });
        let status = status.unwrap_or_default();
        match status {
            200 => self.acked.extend(&ids),
            503 => self.refused.extend(&ids),
            other => panic!("the http source answered {other}"),
        }
        (ids, status)
    }

    /// Posts `n` new events that must be acknowledged.
    fn send_ok(&mut self, n: u64) -> Vec<u64> {
        let (ids, status) = self.send(n, &[]);
        assert_eq!(status, 200, "batch {ids:?} refused");
        ids
    }
}

/// Writes `agent.toml` (monitoring and an http source `http`, both on port 0, plus
/// `source_extra` in the source's section and then `rest`) into a fresh directory, starts the
/// agent, waits for /ready. Returns the directory, the agent, a client of the source and the
/// monitoring address.
fn run_agent(source_extra: &str, rest: &str) -> (TempDir, Agent, Client, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[monitoring]\nbind = \"127.0.0.1:0\"\n\n[sources.http]\ntype = \"http\"\nbind = \"127.0.0.1:0\"\n{source_extra}\n{rest}"
        ),
    )
    .expect("write config");
    let agent = Agent::start(&config, dir.path());
    let mon = agent.wait_ready();
    let client = Client::new(agent.http_source_addr("http"));
    (dir, agent, client, mon)
}

fn file_channel(name: &str) -> String {
    format!(
        "[channels.{name}]\ntype = \"file\"\ncheckpoint_dir = \"data/{name}/ck\"\ndata_dirs = [\"data/{name}/log\"]\ntransaction_capacity = 100\nminimum_required_space = \"1MiB\"\nmax_segment_size = \"1MiB\"\nmax_event_size = \"64KiB\"\n"
    )
}

fn http_sink(name: &str, channel: &str, url: &str, batch_size: u32) -> String {
    format!(
        "[sinks.{name}]\ntype = \"http\"\nchannel = \"{channel}\"\nurl = \"{url}\"\nbatch_size = {batch_size}\ntimeout = \"30s\"\n"
    )
}

/// Waits until every id in `want` reached one of `receivers`; names the missing ones if not.
fn wait_delivered(want: &BTreeSet<u64>, receivers: &[&Receiver]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen: BTreeSet<u64> = receivers.iter().flat_map(|r| r.ids()).collect();
        let missing: Vec<&u64> = want.difference(&seen).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged events not delivered within {WAIT:?}: first {:?}",
            missing.len(),
            want.len(),
            &missing[..missing.len().min(10)]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn failover_moves_to_the_backup_while_the_primary_refuses_and_back_after_its_penalty() {
    let (a, b) = (Receiver::start(), Receiver::start());
    let (_dir, mut agent, mut client, _mon) = run_agent(
        "channels = [\"c1\"]",
        &format!(
            "{}\n{}\n{}\n[sink_groups.g1]\nsinks = [\"k1\", \"k2\"]\nprocessor = {{ type = \"failover\", priorities = {{ k1 = 10, k2 = 5 }}, max_penalty = \"1s\" }}\n",
            file_channel("c1"),
            http_sink("k1", "c1", &a.url, 10),
            http_sink("k2", "c1", &b.url, 10),
        ),
    );

    // The primary takes everything while it answers 200.
    for _ in 0..5 {
        client.send_ok(4);
    }
    wait_delivered(&client.acked, &[&a]);
    assert!(b.got().is_empty(), "the backup got {:?}", b.got());

    // The primary refuses: the backup takes over, nothing is lost.
    a.answer(503);
    let before_a = a.ids();
    let mut down = BTreeSet::new();
    for _ in 0..5 {
        down.extend(client.send_ok(4));
    }
    wait_delivered(&down, &[&b]);
    assert_eq!(a.ids(), before_a, "a refusing primary recorded nothing");

    // The primary is back: once its penalty is over it takes the batches again.
    a.answer(200);
    let deadline = Instant::now() + WAIT;
    loop {
        let ids: BTreeSet<u64> = client.send_ok(1).into_iter().collect();
        wait_delivered(&ids, &[&a, &b]);
        if ids.is_subset(&a.ids()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the primary never took over again"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // From now on every batch goes to the primary.
    let last: BTreeSet<u64> = client.send_ok(10).into_iter().collect();
    wait_delivered(&last, &[&a, &b]);
    assert!(
        last.is_subset(&a.ids()),
        "after recovery the primary gets the batches"
    );
    assert!(
        last.is_disjoint(&b.ids()),
        "after recovery the backup gets nothing"
    );

    wait_delivered(&client.acked, &[&a, &b]);
    agent.stop();
    let seen: BTreeSet<u64> = a.ids().union(&b.ids()).copied().collect();
    assert!(client.acked.is_subset(&seen));
    assert!(
        seen.is_subset(&client.acked),
        "only sent events arrive: {seen:?}"
    );
}

#[test]
fn load_balancing_round_robin_spreads_batches_over_both_receivers() {
    let (a, b) = (Receiver::start(), Receiver::start());
    let (_dir, mut agent, mut client, _mon) = run_agent(
        "channels = [\"c1\"]",
        &format!(
            "{}\n{}\n{}\n[sink_groups.g1]\nsinks = [\"k1\", \"k2\"]\nprocessor = {{ type = \"load_balance\", selector = \"round_robin\", max_backoff = \"1s\" }}\n",
            file_channel("c1"),
            http_sink("k1", "c1", &a.url, 5),
            http_sink("k2", "c1", &b.url, 5),
        ),
    );
    for _ in 0..20 {
        client.send_ok(5);
    }
    wait_delivered(&client.acked, &[&a, &b]);
    agent.stop();
    let (ga, gb) = (a.got(), b.got());
    assert!(
        !ga.is_empty() && !gb.is_empty(),
        "both receivers get batches: {} and {}",
        ga.len(),
        gb.len()
    );
    // Nothing failed, so nothing was sent twice: the two halves are disjoint and make up all.
    assert_eq!(ga.len() + gb.len(), client.acked.len(), "no duplicates");
    let union: BTreeSet<u64> = a.ids().union(&b.ids()).copied().collect();
    assert_eq!(union, client.acked);
}

#[test]
fn multiplexing_routes_each_event_by_its_header() {
    let (r1, r2, r3) = (Receiver::start(), Receiver::start(), Receiver::start());
    let (_dir, mut agent, mut client, _mon) = run_agent(
        "channels = [\"c1\", \"c2\", \"c3\"]\nselector = { type = \"multiplexing\", header = \"region\", mapping = { eu = [\"c1\"], us = [\"c2\"] }, default = [\"c3\"] }",
        &format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            file_channel("c1"),
            file_channel("c2"),
            file_channel("c3"),
            http_sink("k1", "c1", &r1.url, 10),
            http_sink("k2", "c2", &r2.url, 10),
            http_sink("k3", "c3", &r3.url, 10),
        ),
    );
    let mut want: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("region", "eu")], "c1"),
        (&[("region", "us")], "c2"),
        (&[("region", "asia")], "c3"),
        (&[("other", "eu")], "c3"),
        (&[("region", "EU")], "c3"),
    ];
    for round in 0..3 {
        for (headers, channel) in cases {
            let (ids, status) = client.send(3 + round, headers);
            assert_eq!(status, 200);
            want.entry(channel).or_default().extend(ids);
        }
    }
    wait_delivered(&client.acked, &[&r1, &r2, &r3]);
    agent.stop();
    for (channel, r) in [("c1", &r1), ("c2", &r2), ("c3", &r3)] {
        assert_eq!(r.ids(), want[channel], "what reached {channel}");
        assert_eq!(
            r.got().len(),
            want[channel].len(),
            "{channel}: no duplicates"
        );
    }
    for g in r1.got() {
        assert_eq!(g.headers.get("region").map(String::as_str), Some("eu"));
    }
    for g in r2.got() {
        assert_eq!(g.headers.get("region").map(String::as_str), Some("us"));
    }
}

#[test]
fn a_full_channel_answers_503_and_loses_nothing_it_acknowledged() {
    let r = Receiver::start();
    r.answer(503);
    let (_dir, mut agent, mut client, mon) = run_agent(
        "channels = [\"m1\"]",
        &format!(
            "[channels.m1]\ntype = \"memory\"\ncapacity = 10\ntransaction_capacity = 10\nkeep_alive = \"10ms\"\n\n{}",
            http_sink("k1", "m1", &r.url, 5),
        ),
    );
    // The sink cannot deliver: the channel fills up and the source starts refusing.
    let mut refusals = 0;
    for _ in 0..200 {
        let (_, status) = client.send(3, &[]);
        if status == 503 {
            refusals += 1;
            if refusals == 3 {
                break;
            }
        }
    }
    assert_eq!(refusals, 3, "a full channel refuses with 503");
    assert!(
        !client.acked.is_empty(),
        "events were accepted before it filled"
    );
    assert!(r.got().is_empty());

    // The receiver recovers: the sink delivers the backlog, the source accepts again.
    r.answer(200);
    wait_delivered(&client.acked, &[&r]);
    wait_until("the channel accepts again", || client.send(3, &[]).1 == 200);
    wait_delivered(&client.acked, &[&r]);
    wait_until("the channel drains", || {
        agent.metrics(&mon)["CHANNEL.m1"]["ChannelSize"] == "0"
    });
    let accepted = agent.metrics(&mon)["SOURCE.http"]["EventAcceptedCount"].clone();
    agent.stop();

    let got = r.ids();
    assert!(
        client.acked.is_subset(&got),
        "every acknowledged event arrives"
    );
    assert!(
        got.is_disjoint(&client.refused),
        "refused events never arrive: {:?}",
        got.intersection(&client.refused).collect::<Vec<_>>()
    );
    assert_eq!(
        accepted,
        client.acked.len().to_string(),
        "the source counts only what it acknowledged"
    );
}
